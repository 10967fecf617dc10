"""What an audit reads: an open FinalStore through its port, or a JSONL store's files as they are.

Rules:
- `StoreSource` reads an opened store (its owner holds the writer lock). The port only ever
  shows what the store accepted on open, so it cannot show duplicates or revision holes.
- `JsonlScan` reads a JSONL store's files directly, because a damaged store (a duplicated line,
  a revision hole) refuses to open but must still be audited. It takes the writer lock and
  never writes: a torn tail, an unreadable line or a misplaced bar is reported as a problem
  (file and line named), never repaired or skipped silently. It walks the layout described in
  `ssot_jsonl` and decodes with the same structs.
- `stored_symbols` lists the symbols of an opened store, those known only by fetched
  intervals included (the port lists series only).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Final, TypeVar

import msgspec

from fxconnector.core.errors import ContractViolation, StoreCorrupt, StoreError
from fxconnector.core.model.bar import StoredFinal
from fxconnector.core.time_geom import DAY_MS, RANGE_END_MS, RANGE_START_MS, Timeframe
from fxconnector.runtime.store import rules
from fxconnector.runtime.store.audit import AuditProblem, AuditRule, Interval, Read
from fxconnector.runtime.store.jsonl_files import FETCHED_NAME, FetchedLine
from fxconnector.runtime.store.lock import WriterLock
from fxconnector.runtime.store.port import FinalStore
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from fxconnector.runtime.store.ssot_sqlite import SqliteStore

T = TypeVar("T")

_TIMEFRAMES: Final = {tf.value: tf for tf in Timeframe}
_EPOCH: Final = dt.date(1970, 1, 1)
_DECODE_ERRORS: Final = (msgspec.ValidationError, msgspec.DecodeError)
_FINAL: Final = msgspec.json.Decoder(StoredFinal)
_FETCHED: Final = msgspec.json.Decoder(FetchedLine)


class StoreSource:
    """An AuditSource over an opened FinalStore."""

    def __init__(self, store: FinalStore) -> None:
        self.store = store

    def series(self) -> list[tuple[str, Timeframe]]:
        return self.store.series()

    def symbols(self) -> list[str]:
        return stored_symbols(self.store)

    def records(self, symbol: str, tf: Timeframe, from_ms: int | None, to_ms: int | None) -> Read:
        found: list[StoredFinal] = []
        for bar in self.store.bars(symbol, tf, from_ms, to_ms):
            if bar.rev == 0:
                found.append(bar)
            else:
                found.extend(self.store.revisions(symbol, tf, bar.open_ms))
        return found, []

    def fetched(self, symbol: str) -> tuple[list[Interval], list[AuditProblem]]:
        return self.store.fetched_intervals(symbol, RANGE_START_MS, RANGE_END_MS), []


def stored_symbols(store: FinalStore) -> list[str]:
    """Symbols with bars or fetched intervals in an opened store, sorted."""
    found = {symbol for symbol, _ in store.series()}
    if isinstance(store, JsonlStore):
        found.update(
            path.parent.name
            for path in store.root.glob(f"*/{FETCHED_NAME}")
            if rules.valid_symbol(path.parent.name)
        )
    elif isinstance(store, SqliteStore):
        # A second, read-only connection: the port has no listing of coverage-only symbols.
        # The owner has flushed (committed) before asking, so this sees every row.
        try:
            db = sqlite3.connect(f"file:{store.db_path}?mode=ro", uri=True)
            try:
                found.update(row[0] for row in db.execute("SELECT DISTINCT symbol FROM fetched"))
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot list symbols of {store.db_path}: {exc}") from exc
    return sorted(found)


class JsonlScan:
    """An AuditSource over a JSONL store's files, tolerant of damage; holds the writer lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = WriterLock(root)
        self._files: dict[tuple[str, Timeframe], list[Path]] = {}

    def open(self) -> None:
        """Take the writer lock and list the files (StoreLocked when a writer holds it)."""
        if not self.root.is_dir():
            raise StoreError(f"no JSONL store at {self.root}")
        self._lock.acquire()
        try:
            self._list()
        except OSError as exc:
            self._lock.release()
            raise StoreError(f"cannot read JSONL store {self.root}: {exc}") from exc

    def close(self) -> None:
        self._lock.release()

    def _list(self) -> None:
        self._files = {}
        for symbol_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if not rules.valid_symbol(symbol_dir.name):
                continue  # not the store's (a backup folder, say): the store ignores it too
            for tf_dir in sorted(p for p in symbol_dir.iterdir() if p.is_dir()):
                tf = _TIMEFRAMES.get(tf_dir.name)
                paths = sorted(tf_dir.glob("*.jsonl"))
                if tf is not None and paths:
                    self._files[(symbol_dir.name, tf)] = paths

    def series(self) -> list[tuple[str, Timeframe]]:
        return sorted(self._files)

    def symbols(self) -> list[str]:
        found = {symbol for symbol, _ in self._files}
        found.update(
            path.parent.name
            for path in self.root.glob(f"*/{FETCHED_NAME}")
            if rules.valid_symbol(path.parent.name)
        )
        return sorted(found)

    def records(self, symbol: str, tf: Timeframe, from_ms: int | None, to_ms: int | None) -> Read:
        first_day = None if from_ms is None else from_ms // DAY_MS
        last_day = None if to_ms is None else (to_ms - 1) // DAY_MS
        found: list[StoredFinal] = []
        problems: list[AuditProblem] = []
        for path in self._files.get((symbol, tf), []):
            day = _day_of(path)
            if day is None:
                problems.append(
                    AuditProblem(
                        AuditRule.MISPLACED.value, symbol, tf.value, None, None,
                        "not a day file name (YYYY-MM-DD.jsonl): its lines are not read",
                        str(path),
                    )
                )  # fmt: skip
                continue
            if (first_day is not None and day < first_day) or (
                last_day is not None and day > last_day
            ):
                continue
            for line_number, bar, problem in _scan(path, _FINAL, symbol, tf.value):
                if problem is None and bar is not None:
                    problem = _placement(bar, symbol, tf, day)
                if problem is not None:
                    problems.append(_at(problem, path, line_number, bar, symbol, tf.value))
                elif (
                    bar is not None
                    and (from_ms is None or bar.open_ms >= from_ms)
                    and (to_ms is None or bar.open_ms < to_ms)
                ):
                    found.append(bar)
        return found, problems

    def fetched(self, symbol: str) -> tuple[list[Interval], list[AuditProblem]]:
        path = self.root / symbol / FETCHED_NAME
        if not path.exists():
            return [], []
        intervals: list[Interval] = []
        problems: list[AuditProblem] = []
        for line_number, line, problem in _scan(path, _FETCHED, symbol, ""):
            if problem is None and line is not None:
                try:
                    rules.check_interval(symbol, line.from_ms, line.to_ms)
                    intervals.append((line.from_ms, line.to_ms))
                except ContractViolation as exc:
                    problem = (AuditRule.UNREADABLE, str(exc))
            if problem is not None:
                problems.append(_at(problem, path, line_number, None, symbol, ""))
        return rules.merge_all(intervals), problems


Issue = tuple[str, str]  # (rule, message)


def _scan(
    path: Path, decoder: msgspec.json.Decoder[T], symbol: str, tf: str
) -> list[tuple[int, T | None, Issue | None]]:
    """(line number, value or None, issue or None) for every line of `path`, read-only."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreCorrupt(f"cannot read {path}: {exc}") from exc
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    out: list[tuple[int, T | None, Issue | None]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            out.append((number, None, (AuditRule.UNREADABLE, "empty line")))
            continue
        try:
            out.append((number, decoder.decode(line), None))
        except _DECODE_ERRORS as exc:
            out.append((number, None, (AuditRule.UNREADABLE, str(exc))))
    if tail:
        issue = f"torn last line ({len(tail)} bytes, no newline): the next writer cuts it"
        out.append((len(lines) + 1, None, (AuditRule.TORN_TAIL, issue)))
    return out


def _placement(bar: StoredFinal, symbol: str, tf: Timeframe, day: int) -> Issue | None:
    if bar.symbol != symbol or bar.tf is not tf:
        return AuditRule.MISPLACED, f"a {bar.symbol} {bar.tf} bar in the {symbol}/{tf} folder"
    if bar.open_ms // DAY_MS != day:
        return AuditRule.MISPLACED, f"open_ms {bar.open_ms} is not on this file's UTC day"
    return None


def _at(
    issue: Issue, path: Path, line: int, bar: StoredFinal | None, symbol: str, tf: str
) -> AuditProblem:
    rule, message = str(issue[0]), issue[1]
    if bar is None:
        return AuditProblem(rule, symbol, tf, None, None, message, f"{path}:{line}")
    return AuditProblem(rule, symbol, tf, bar.open_ms, bar.rev, message, f"{path}:{line}")


def _day_of(path: Path) -> int | None:
    """The UTC day index a day file is named after, or None for a foreign name."""
    try:
        day = dt.date.fromisoformat(path.stem)
    except ValueError:
        return None
    return (day - _EPOCH).days if path.name == f"{day.isoformat()}.jsonl" else None
