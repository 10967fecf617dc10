"""The default SSOT: append-only JSON lines, one file per symbol/tf/UTC day (DESIGN §6).

Layout under `root`:
    {symbol}/{tf}/{YYYY-MM-DD}.jsonl   finals whose open_ms falls on that UTC day, one canonical
                                       StoredFinal per line (rev 0 lines are byte-identical to the
                                       public ohlcv_event_v1 encoding), revisions appended after
    {symbol}/fetched.jsonl             coverage, one `{"from_ms":..,"to_ms":..}` per line
    manifest.json                      what the store is (see manifest.py)
    .writer.lock                       the writer lock (see lock.py)

Rules:
- Lines are only ever appended, whole, with one write per file per call; the canonical codec
  encodes every line. A revision lands in the same file as its rev 0, after it.
- Durability: `flush()` fsyncs every file written since the last flush and the directories that
  gained entries. There is no background thread: appends older than `fsync_interval_ms` are
  flushed by the next `append()`/`mark_fetched()`, so the interval bounds the delay only while
  writes keep coming. Whoever needs an acknowledgement calls `flush()`.
- `open()` is recovery: any file not ending in a newline loses its torn tail (reported); every
  line is decoded and checked against the contract, its file and the rev sequence. A bad line
  in the middle of a file (or a file with a foreign name) is skipped and reported in
  `RecoveryReport.corrupt_lines` as "path:LINE: reason"; every other line is served. The UTC
  day of a skipped 1m line loses its fetched coverage, so its minutes are `missing` (asked
  again), never `quiet`. A later revision whose predecessor line is unreadable is kept (the
  gap is reported). The bytes on disk are never rewritten: `fxconnector audit` shows the same.
- `open()` settles the manifest (creates it in a new store, refuses a store that is not what
  the writer wants); `append()` refuses a bar off the manifest's grid (`manifest.GridCheck`).
- Single-threaded: one writer task owns the store; readers in the same process share its index.
- A failed write or fsync leaves disk and index possibly out of step, so the store refuses
  further use until it is closed and reopened (recovery rebuilds the index from disk).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final, TypeVar

import msgspec

from fxconnector.core.errors import ContractViolation, StoreError
from fxconnector.core.model.bar import OhlcvEvent, StoredFinal
from fxconnector.core.time_geom import DAY_MS, Timeframe
from fxconnector.core.utils import json_codec
from fxconnector.runtime.store import manifest, rules
from fxconnector.runtime.store.lock import WriterLock
from fxconnector.runtime.store.port import AppendResult, RecoveryReport

T = TypeVar("T")

FETCHED_NAME: Final = "fetched.jsonl"
#: Open append descriptors kept at once; a live connector writes a few files per minute.
MAX_OPEN_FILES: Final = 64
#: Unreadable lines listed one by one per file; the rest are counted in one entry.
MAX_REPORTED_LINES: Final = 100
_EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()
_TIMEFRAMES: Final = {tf.value: tf for tf in Timeframe}
_DECODE_ERRORS: Final = (msgspec.ValidationError, msgspec.DecodeError)


class FetchedLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One coverage line: broker 1m history for `[from_ms, to_ms)` was fetched."""

    from_ms: int
    to_ms: int


_FINAL_DECODER: Final = msgspec.json.Decoder(StoredFinal)
_FETCHED_DECODER: Final = msgspec.json.Decoder(FetchedLine)


class _Series:
    """The latest revision of every key of one symbol/tf, with open_ms kept sortable."""

    __slots__ = ("by_open", "order", "ordered")

    def __init__(self) -> None:
        self.by_open: dict[int, StoredFinal] = {}
        self.order: list[int] = []
        self.ordered = True

    def put(self, bar: StoredFinal) -> None:
        if bar.open_ms not in self.by_open:
            if self.order and bar.open_ms < self.order[-1]:
                self.ordered = False  # sorted lazily: appends are nearly always the newest bar
            self.order.append(bar.open_ms)
        self.by_open[bar.open_ms] = bar

    def opens(self) -> list[int]:
        if not self.ordered:
            self.order.sort()
            self.ordered = True
        return self.order


class _Files:
    """Append descriptors in a bounded LRU, and what must be fsynced at the next sync."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._fds: OrderedDict[Path, int] = OrderedDict()
        self._dirty: set[Path] = set()
        self._dirs: set[Path] = set()  # directories that gained an entry since the last sync

    def append(self, path: Path, data: bytes) -> None:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._open(path)
        else:
            self._fds.move_to_end(path)
        view = memoryview(data)
        while view:  # a regular file takes it all at once; loop for the rare short write
            view = view[os.write(fd, view) :]
        self._dirty.add(path)

    def _open(self, path: Path) -> int:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.update(p.parent for p in missing)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._dirs.add(path.parent)
        self._fds[path] = fd
        while len(self._fds) > self._capacity:
            old_path, old_fd = self._fds.popitem(last=False)
            if old_path in self._dirty:  # sync before closing: a later sync cannot reach it
                os.fsync(old_fd)
                self._dirty.discard(old_path)
            os.close(old_fd)
        return fd

    def sync(self) -> None:
        for path in sorted(self._dirty):
            os.fsync(self._fds[path])
        self._dirty.clear()
        for directory in sorted(self._dirs):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._dirs.clear()

    def close(self) -> None:
        while self._fds:
            _, fd = self._fds.popitem()
            with contextlib.suppress(OSError):
                os.close(fd)
        self._dirty.clear()
        self._dirs.clear()


class JsonlStore:
    """FinalStore on JSON-lines files under `root`."""

    def __init__(
        self,
        root: Path,
        fsync_interval_ms: int = 50,
        *,
        identity: manifest.StoreIdentity | None = None,
    ) -> None:
        if fsync_interval_ms < 0:
            raise StoreError(f"fsync_interval_ms must be >= 0, got {fsync_interval_ms}")
        self.root = root
        self._identity = identity
        self.grid: manifest.GridCheck | None = None
        self._interval_s = fsync_interval_ms / 1000
        self._lock = WriterLock(root)
        self._files = _Files(MAX_OPEN_FILES)
        self._series: dict[tuple[str, Timeframe], _Series] = {}
        self._fetched: dict[str, list[rules.Interval]] = {}
        self._day_names: dict[int, str] = {}
        self._state = "unopened"
        self._unflushed_since: float | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> RecoveryReport:
        """Take the writer lock, repair torn tails, load and check every line."""
        if self._state == "open":
            raise StoreError(f"JSONL store {self.root} is already open")
        self._lock.acquire()
        self._series, self._fetched = {}, {}
        torn: list[str] = []
        corrupt: list[str] = []
        try:
            with rules.bulk(rules.BULK_MIN):  # a store may hold millions of lines
                files = self._load_all(torn, corrupt)
            empty = not self._fetched and not any(s.by_open for s in self._series.values())
            self.grid = manifest.open_guard(self.root, self._identity, empty=empty)
        except OSError as exc:
            self._lock.release()
            raise StoreError(f"cannot read JSONL store {self.root}: {exc}") from exc
        except BaseException:
            self._lock.release()
            raise
        self._state, self._unflushed_since = "open", None
        loaded = sum(len(series.by_open) for series in self._series.values())
        return RecoveryReport(
            files_checked=files, bars_loaded=loaded, torn_tails=torn, corrupt_lines=corrupt
        )

    def close(self) -> None:
        """Flush, fsync and release the lock. Idempotent."""
        if self._state not in ("open", "failed"):
            return
        try:
            if self._state == "open":
                self.flush()
        finally:
            self._files.close()
            self._lock.release()
            self._state = "closed"

    # -- writes ----------------------------------------------------------------------------

    def append(self, bars: Sequence[OhlcvEvent], reason: str = "") -> list[AppendResult]:
        """Append final bars; see `rules` for validation and outcomes."""
        self._require_open()
        with rules.bulk(len(bars)):
            return self._append(bars, reason)

    def _append(self, bars: Sequence[OhlcvEvent], reason: str) -> list[AppendResult]:
        rules.check_finals(bars)
        if self.grid is not None:
            self.grid.check(bars)
        results, writes = rules.resolve(bars, self._lookup, reason)
        if writes:
            by_file: dict[tuple[str, Timeframe, int], list[StoredFinal]] = {}
            for bar in writes:
                by_file.setdefault((bar.symbol, bar.tf, bar.open_ms // DAY_MS), []).append(bar)
            self._write(
                [
                    (self._day_path(*key), json_codec.encode_lines(group))
                    for key, group in by_file.items()
                ]
            )
            for bar in writes:
                series = self._series.get((bar.symbol, bar.tf))
                if series is None:
                    series = self._series[(bar.symbol, bar.tf)] = _Series()
                series.put(bar)
        return results

    def flush(self) -> None:
        """Make every append so far durable."""
        self._require_open()
        try:
            self._files.sync()
        except OSError as exc:
            # After a failed fsync the kernel may have dropped the dirty pages: nothing written
            # since the last good sync can be trusted, so only a reopen (recovery) may go on.
            self._state = "failed"
            raise StoreError(f"fsync failed in JSONL store {self.root}: {exc}") from exc
        self._unflushed_since = None

    def mark_fetched(self, symbol: str, from_ms: int, to_ms: int) -> None:
        """Record that 1m history for `[from_ms, to_ms)` was fetched; nothing if already known."""
        self._require_open()
        rules.check_interval(symbol, from_ms, to_ms)
        known = self._fetched.get(symbol, [])
        if from_ms == to_ms or rules.covers(known, from_ms, to_ms):
            return
        line = json_codec.encode(FetchedLine(from_ms=from_ms, to_ms=to_ms)) + b"\n"
        self._write([(self.root / symbol / FETCHED_NAME, line)])
        self._fetched[symbol] = rules.merge_all([*known, (from_ms, to_ms)])

    def _write(self, chunks: list[tuple[Path, bytes]]) -> None:
        try:
            for path, data in chunks:
                self._files.append(path, data)
        except OSError as exc:
            self._state = "failed"
            raise StoreError(
                f"write failed in JSONL store {self.root}: {exc}; close and reopen the store"
            ) from exc
        now = time.monotonic()
        if self._unflushed_since is None:
            self._unflushed_since = now
        if now - self._unflushed_since >= self._interval_s:
            self.flush()

    # -- reads -----------------------------------------------------------------------------

    def fetched_intervals(self, symbol: str, from_ms: int, to_ms: int) -> list[tuple[int, int]]:
        """Merged fetched intervals overlapping `[from_ms, to_ms)`, clipped, ascending."""
        self._require_open()
        return rules.clip(self._fetched.get(symbol, []), from_ms, to_ms)

    def bars(
        self, symbol: str, tf: Timeframe, from_ms: int | None = None, to_ms: int | None = None
    ) -> Iterator[StoredFinal]:
        """Latest revision of each key with `from_ms <= open_ms < to_ms`, by open_ms."""
        self._require_open()
        series = self._series.get((symbol, tf))
        if series is None:
            return iter(())
        opens = series.opens()
        low = 0 if from_ms is None else bisect_left(opens, from_ms)
        high = len(opens) if to_ms is None else bisect_left(opens, to_ms)
        by_open = series.by_open
        # A list, not a generator: appends while the caller iterates must not disturb it.
        return iter([by_open[open_ms] for open_ms in opens[low:high]])

    def revisions(self, symbol: str, tf: Timeframe, open_ms: int) -> list[StoredFinal]:
        """Every stored revision of one key, rev ascending (re-read from its day file)."""
        latest = self.latest(symbol, tf, open_ms)
        if latest is None:
            return []
        if latest.rev == 0:
            return [latest]
        path = self._day_path(symbol, tf, open_ms // DAY_MS)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        _, values = _decode_lines(_FINAL_DECODER, path, data, [])  # open() reported bad lines
        found = [bar for bar in values if bar.open_ms == open_ms]
        return sorted(found, key=lambda bar: bar.rev)

    def latest(self, symbol: str, tf: Timeframe, open_ms: int) -> StoredFinal | None:
        """The latest revision of one key, or None."""
        self._require_open()
        return self._lookup(symbol, tf, open_ms)

    def last_open_ms(self, symbol: str, tf: Timeframe) -> int | None:
        """open_ms of the newest stored bar of symbol/tf, or None."""
        self._require_open()
        series = self._series.get((symbol, tf))
        return series.opens()[-1] if series is not None and series.order else None

    def series(self) -> list[tuple[str, Timeframe]]:
        """Every (symbol, tf) with at least one stored bar, sorted."""
        self._require_open()
        return sorted(key for key, series in self._series.items() if series.by_open)

    # -- internals -------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._state == "open":
            return
        if self._state == "failed":
            raise StoreError(
                f"JSONL store {self.root} failed after an I/O error; close and reopen it"
            )
        raise StoreError(f"JSONL store {self.root} is {self._state}: call open() before using it")

    def _lookup(self, symbol: str, tf: Timeframe, open_ms: int) -> StoredFinal | None:
        series = self._series.get((symbol, tf))
        return None if series is None else series.by_open.get(open_ms)

    def _day_path(self, symbol: str, tf: Timeframe, day: int) -> Path:
        name = self._day_names.get(day)
        if name is None:
            name = self._day_names[day] = f"{dt.date.fromordinal(_EPOCH_ORDINAL + day)}.jsonl"
        return self.root / symbol / tf.value / name

    def _load_all(self, torn: list[str], corrupt: list[str]) -> int:
        files = 0
        for symbol_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            symbol = symbol_dir.name
            if not rules.valid_symbol(symbol):
                continue  # not ours (e.g. a backup folder): the store never creates these
            files += self._load_fetched(symbol_dir / FETCHED_NAME, symbol, torn, corrupt)
            unsure_days: set[int] = set()
            for tf_dir in sorted(p for p in symbol_dir.iterdir() if p.is_dir()):
                tf = _TIMEFRAMES.get(tf_dir.name)
                if tf is not None:
                    files += self._load_series(tf_dir, symbol, tf, torn, corrupt, unsure_days)
            for day in sorted(unsure_days):
                self._fetched[symbol] = _without(
                    self._fetched.get(symbol, []), day * DAY_MS, (day + 1) * DAY_MS
                )
        return files

    def _load_series(
        self,
        tf_dir: Path,
        symbol: str,
        tf: Timeframe,
        torn: list[str],
        corrupt: list[str],
        unsure_days: set[int],
    ) -> int:
        """Load one symbol/tf folder; bad lines go to `corrupt`, the 1m days they hit to
        `unsure_days`."""
        series = self._series.setdefault((symbol, tf), _Series())
        by_open = series.by_open
        paths = sorted(tf_dir.glob("*.jsonl"))
        for path in paths:
            day = _day_of(path)
            if day is None:
                corrupt.append(f"{path}: not a day file name (YYYY-MM-DD.jsonl); not read")
                continue
            before = len(corrupt)
            numbers, values = _decode_lines(
                _FINAL_DECODER, path, _read_repaired(path, torn), corrupt
            )
            for line_number, bar in zip(numbers, values, strict=True):
                problem = rules.final_problem(bar)
                if problem is None and (bar.symbol != symbol or bar.tf is not tf):
                    problem = f"a {bar.symbol} {bar.tf} bar in the {symbol}/{tf} folder"
                if problem is None and bar.open_ms // DAY_MS != day:
                    problem = f"open_ms {bar.open_ms} is not on this file's UTC day"
                if problem is None:
                    previous = by_open.get(bar.open_ms)
                    expected = 0 if previous is None else previous.rev + 1
                    if bar.rev < expected:
                        problem = f"rev {bar.rev} of open_ms {bar.open_ms}, expected {expected}"
                    elif bar.rev > expected:  # kept: the newest word on its key
                        corrupt.append(
                            f"{path}:{line_number}: rev {bar.rev} of open_ms {bar.open_ms} "
                            f"kept, but rev {expected} before it is missing"
                        )
                if problem is not None:
                    corrupt.append(f"{path}:{line_number}: {problem}")
                    if tf is Timeframe.M1:
                        unsure_days.add(bar.open_ms // DAY_MS)
                    continue
                by_open[bar.open_ms] = bar
            if tf is Timeframe.M1 and len(corrupt) > before:
                unsure_days.add(day)
        series.order = sorted(by_open)
        series.ordered = True
        return len(paths)

    def _load_fetched(self, path: Path, symbol: str, torn: list[str], corrupt: list[str]) -> int:
        if not path.exists():
            return 0
        before = len(corrupt)
        numbers, decoded = _decode_lines(
            _FETCHED_DECODER, path, _read_repaired(path, torn), corrupt
        )
        lines = []
        for line_number, line in zip(numbers, decoded, strict=True):
            try:
                rules.check_interval(symbol, line.from_ms, line.to_ms)
            except ContractViolation as exc:
                # Coverage lost is only asked again; a bad interval believed could make a quiet.
                corrupt.append(f"{path}:{line_number}: {exc}")
                continue
            lines.append(line)
        merged = rules.merge_all((line.from_ms, line.to_ms) for line in lines)
        self._fetched[symbol] = merged
        # Compacting would erase a corrupt line's evidence: only a clean file is rewritten.
        if len(lines) > 2 * len(merged) + 64 and len(corrupt) == before:
            _rewrite(path, json_codec.encode_lines([FetchedLine(a, b) for a, b in merged]))
        return 1


def _day_of(path: Path) -> int | None:
    """The UTC day index a day file is named after; None for a foreign name."""
    try:
        day = dt.date.fromisoformat(path.stem)
    except ValueError:
        return None
    if path.name != f"{day.isoformat()}.jsonl":
        return None
    return day.toordinal() - _EPOCH_ORDINAL


def _without(intervals: list[rules.Interval], start: int, end: int) -> list[rules.Interval]:
    """`intervals` (merged, ascending) minus `[start, end)`."""
    out: list[rules.Interval] = []
    for low, high in intervals:
        if high <= start or low >= end:
            out.append((low, high))
            continue
        if low < start:
            out.append((low, start))
        if high > end:
            out.append((end, high))
    return out


def _read_repaired(path: Path, torn: list[str]) -> bytes:
    """The file's bytes after cutting a torn last line (a crash mid-write), which is reported."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return data
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as handle:
        handle.truncate(keep)
        os.fsync(handle.fileno())
    torn.append(f"{path}: dropped {len(data) - keep} bytes")
    return data[:keep]


def _decode_lines(
    decoder: msgspec.json.Decoder[T], path: Path, data: bytes, corrupt: list[str]
) -> tuple[Sequence[int], list[T]]:
    """(line numbers, values) of every readable line; each unreadable one is reported in
    `corrupt` as "path:LINE: reason" and skipped."""
    try:
        values = decoder.decode_lines(data)
    except _DECODE_ERRORS:
        values = None
    # decode_lines skips blank lines; a count mismatch means one is there, and it is corrupt.
    if values is not None and len(values) == data.count(b"\n"):
        return range(1, len(values) + 1), values
    numbers: list[int] = []
    good: list[T] = []
    bad = 0
    for line_number, line in enumerate(data.split(b"\n")[:-1], start=1):
        problem = "empty line" if not line.strip() else None
        if problem is None:
            try:
                good.append(decoder.decode(line))
            except _DECODE_ERRORS as exc:
                problem = str(exc)
            else:
                numbers.append(line_number)
                continue
        bad += 1
        if bad <= MAX_REPORTED_LINES:
            corrupt.append(f"{path}:{line_number}: {problem}")
    if bad > MAX_REPORTED_LINES:
        corrupt.append(f"{path}: {bad - MAX_REPORTED_LINES} more unreadable lines not listed")
    return numbers, good


def _rewrite(path: Path, data: bytes) -> None:
    """Replace a file atomically: temp file, fsync, rename, fsync the directory."""
    temp = path.with_name(path.name + ".tmp")
    with temp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
