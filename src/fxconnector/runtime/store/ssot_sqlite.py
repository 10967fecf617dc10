"""The SQLite SSOT option: the same FinalStore on stdlib sqlite3 in WAL mode (DESIGN §6).

Layout: `path` is a directory holding `ssot.sqlite3` (plus SQLite's `-wal`/`-shm` files) and the
writer lock `.writer.lock` (see lock.py) and `manifest.json` (see manifest.py).

Rules:
- Table `finals`: every revision is a row, primary key `(symbol, tf, open_ms, rev)`; the latest
  revision of a key is its row with the highest rev. `volume` is an ANY column of a STRICT table
  so an int volume reads back as an int and lines encode the same as in the JSONL store.
  CHECK constraints repeat the contract so even a hand-written row cannot break it.
- Table `fetched`: coverage rows per symbol, kept merged (no two rows overlap or touch).
- Validation and outcomes are `rules`, shared with the JSONL store; the manifest is settled on
  open and guards every append (`manifest.GridCheck`), as in the JSONL store.
- Durability: appends join one open transaction, committed by `flush()` with
  `synchronous=FULL` (the WAL is fsynced at commit). There is no background thread: a
  transaction older than `fsync_interval_ms` is committed by the next append/mark_fetched.
- One append is atomic (a savepoint): a failing call writes nothing. Reads on this connection
  see uncommitted appends, like the JSONL store's index.
- One writer, readers in other threads too (the HTTP range reads run off the event loop): every
  public method holds one lock (`@_guarded`), and `bars()` reads lazily in pages of `_PAGE`
  keys, taking the lock per page, so a huge range never sits in memory or holds the lock long.
- `open()` recovery is SQLite's own WAL replay; `PRAGMA quick_check` then proves the file
  readable, and a damaged file raises StoreCorrupt naming it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Concatenate, Final, ParamSpec, TypeVar

from fxconnector.core.builders.vector import BarColumns
from fxconnector.core.errors import ContractViolation, StoreCorrupt, StoreError
from fxconnector.core.model.bar import OhlcvEvent, Source, StoredFinal
from fxconnector.core.time_geom import DAY_MS, Timeframe, iso_utc
from fxconnector.core.utils import json_codec
from fxconnector.runtime.store import manifest, rules
from fxconnector.runtime.store.lock import WriterLock
from fxconnector.runtime.store.port import AppendResult, RecoveryReport

DB_NAME: Final = "ssot.sqlite3"
#: SQLite's default limit on bound parameters is 999 in old builds; stay well below it.
_CHUNK: Final = 500
#: Keys a lazy `bars()` reads per query (and per hold of the lock).
_PAGE: Final = 2_000
_TIMEFRAMES: Final = {tf.value: tf for tf in Timeframe}
_SOURCES: Final = {source.value: source for source in Source}

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS finals (
    symbol TEXT NOT NULL,
    tf TEXT NOT NULL,
    open_ms INTEGER NOT NULL,
    rev INTEGER NOT NULL CHECK (rev >= 0),
    close_ms INTEGER NOT NULL,
    open REAL NOT NULL,
    high REAL NOT NULL,
    low REAL NOT NULL,
    close REAL NOT NULL,
    volume ANY NOT NULL CHECK (typeof(volume) IN ('integer', 'real') AND volume >= 0),
    tick_count INTEGER NOT NULL CHECK (tick_count >= 0),
    source TEXT NOT NULL CHECK (source IN ('history', 'derived')),
    event_ts INTEGER NOT NULL CHECK (event_ts = close_ms),
    reason TEXT NOT NULL DEFAULT '',
    CHECK (close_ms > open_ms),
    CHECK (0 < low AND low <= open AND low <= close AND open <= high AND close <= high),
    PRIMARY KEY (symbol, tf, open_ms, rev)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fetched (
    symbol TEXT NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    CHECK (from_ms < to_ms),
    PRIMARY KEY (symbol, from_ms)
) STRICT, WITHOUT ROWID;
"""

# Literal SQL only (no formatting), so nothing but bound parameters ever reaches a query.
_SELECT_KEY: Final = (
    "SELECT open_ms, rev, close_ms, open, high, low, close, volume, tick_count, source, event_ts,"
    " reason FROM finals WHERE symbol = ? AND tf = ? AND open_ms = ?"
)
_REVISIONS: Final = _SELECT_KEY + " ORDER BY rev"
_LATEST_ONE: Final = _SELECT_KEY + " ORDER BY rev DESC LIMIT 1"
# Bare columns next to max(rev) come from the row holding that max (documented SQLite rule),
# so one grouped scan of the primary key yields the latest revision per key.
_LATEST: Final = (
    "SELECT open_ms, rev, close_ms, open, high, low, close, volume, tick_count, source, event_ts,"
    " reason, max(rev) FROM finals WHERE symbol = ? AND tf = ?"
)
_INSERT: Final = (
    "INSERT INTO finals (symbol, tf, open_ms, rev, close_ms, open, high, low, close, volume,"
    " tick_count, source, event_ts, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

Row = tuple[int, int, int, float, float, float, float, float, int, str, int, str]
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _guarded(
    method: Callable[Concatenate[SqliteStore, _P], _R],
) -> Callable[Concatenate[SqliteStore, _P], _R]:
    """Run the method holding the store's lock (one thread in the connection at a time)."""

    def call(self: SqliteStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._guard:
            return method(self, *args, **kwargs)

    call.__name__, call.__doc__ = method.__name__, method.__doc__
    return call


class SqliteStore:
    """FinalStore on one SQLite database in the directory `path`."""

    def __init__(
        self,
        path: Path,
        fsync_interval_ms: int = 50,
        *,
        identity: manifest.StoreIdentity | None = None,
    ) -> None:
        if fsync_interval_ms < 0:
            raise StoreError(f"fsync_interval_ms must be >= 0, got {fsync_interval_ms}")
        self.path = path
        self._identity = identity
        self.grid: manifest.GridCheck | None = None
        self.db_path = path / DB_NAME
        self._interval_s = fsync_interval_ms / 1000
        self._lock = WriterLock(path)
        self._guard = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._state = "unopened"
        self._series: set[tuple[str, Timeframe]] = set()
        self._unflushed_since: float | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @_guarded
    def open(self) -> RecoveryReport:
        """Take the writer lock, open the database (WAL replay), check it and load series."""
        if self._state == "open":
            raise StoreError(f"SQLite store {self.db_path} is already open")
        self._lock.acquire()
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False: the
            # owner may hand the store to a worker thread (calls are never concurrent).
            db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            self._lock.release()
            raise StoreError(f"cannot open SQLite store {self.db_path}: {exc}") from exc
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"SQLite store {self.db_path} cannot use WAL (mode {mode})")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise StoreCorrupt(f"{self.db_path}: {'; '.join(problems)}")
            series = db.execute("SELECT DISTINCT symbol, tf FROM finals").fetchall()
            loaded = db.execute("SELECT count(*) FROM finals WHERE rev = 0").fetchone()[0]
            self._series = {(symbol, _timeframe(tf, self.db_path)) for symbol, tf in series}
            empty = not series and db.execute("SELECT 1 FROM fetched LIMIT 1").fetchone() is None
            self.grid = manifest.open_guard(self.path, self._identity, empty=empty)
        except sqlite3.DatabaseError as exc:
            db.close()
            self._lock.release()
            raise StoreCorrupt(f"{self.db_path}: {exc}") from exc
        except BaseException:
            db.close()
            self._lock.release()
            raise
        self._db, self._state, self._unflushed_since = db, "open", None
        return RecoveryReport(files_checked=1, bars_loaded=loaded, torn_tails=[])

    @_guarded
    def close(self) -> None:
        """Commit, close the database and release the lock. Idempotent."""
        if self._state == "closed" or self._db is None:
            return
        try:
            if self._state == "open":
                self.flush()
        finally:
            self._db.close()  # an open transaction (failed state) is rolled back here
            self._db = None
            self._lock.release()
            self._state = "closed"

    # -- writes ----------------------------------------------------------------------------

    @_guarded
    def append(self, bars: Sequence[OhlcvEvent], reason: str = "") -> list[AppendResult]:
        """Append final bars; see `rules` for validation and outcomes."""
        db = self._require_open()
        with rules.bulk(len(bars)):
            return self._append(db, bars, reason)

    def _append(
        self, db: sqlite3.Connection, bars: Sequence[OhlcvEvent], reason: str
    ) -> list[AppendResult]:
        rules.check_finals(bars)
        if self.grid is not None:
            self.grid.check(bars)
        known = self._latest_of(db, bars)
        results, writes = rules.resolve(
            bars, lambda symbol, tf, open_ms: known.get((symbol, tf, open_ms)), reason
        )
        if writes:
            rows = [
                (b.symbol, b.tf.value, b.open_ms, b.rev, b.close_ms, b.open, b.high, b.low,
                 b.close, b.volume, b.tick_count, str(b.source), b.event_ts, b.reason)
                for b in writes
            ]  # fmt: skip
            self._write(db, lambda: db.executemany(_INSERT, rows))
            self._series.update((bar.symbol, bar.tf) for bar in writes)
        return results

    @_guarded
    def append_columns(
        self, symbol: str, tf: Timeframe, columns: BarColumns, source: Source
    ) -> list[StoredFinal]:
        """Append one series' bars as first finals of days it lacks; see the port."""
        db = self._require_open()
        with rules.bulk(len(columns)):
            bars = rules.stored_columns(symbol, tf, source, columns)
            if not bars:
                return []
            if self.grid is not None:
                self.grid.check_opens(bars, columns.open_ms)
            first_day = bars[0].open_ms - bars[0].open_ms % DAY_MS
            held = db.execute(
                "SELECT min(open_ms) FROM finals WHERE symbol = ? AND tf = ? AND open_ms >= ? "
                "AND open_ms < ? AND open_ms / ? IN (SELECT value FROM json_each(?))",
                (
                    symbol,
                    tf.value,
                    first_day,
                    bars[-1].open_ms + DAY_MS,
                    DAY_MS,
                    json_codec.encode(sorted({b.open_ms // DAY_MS for b in bars})).decode(),
                ),
            ).fetchone()[0]
            if held is not None:
                raise ContractViolation(
                    f"{symbol} {tf.value}: the store already holds a bar on the UTC day "
                    f"{iso_utc(held)[:10]}; append them one by one"
                )
            rows = [
                (b.symbol, b.tf.value, b.open_ms, 0, b.close_ms, b.open, b.high, b.low,
                 b.close, b.volume, b.tick_count, str(b.source), b.event_ts, "")
                for b in bars
            ]  # fmt: skip
            self._write(db, lambda: db.executemany(_INSERT, rows))
            self._series.add((symbol, tf))
            return bars

    @_guarded
    def flush(self) -> None:
        """Commit the open transaction (fsynced: synchronous=FULL)."""
        db = self._require_open()
        if db.in_transaction:
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._state = "failed"
                raise StoreError(f"commit failed in SQLite store {self.db_path}: {exc}") from exc
        self._unflushed_since = None

    @_guarded
    def mark_fetched(self, symbol: str, from_ms: int, to_ms: int) -> None:
        """Record that 1m history for `[from_ms, to_ms)` was fetched, merged with its neighbours."""
        db = self._require_open()
        rules.check_interval(symbol, from_ms, to_ms)
        if from_ms == to_ms:
            return
        touching = db.execute(
            "SELECT from_ms, to_ms FROM fetched WHERE symbol = ? AND from_ms <= ? AND to_ms >= ?",
            (symbol, to_ms, from_ms),
        ).fetchall()
        if rules.covers(touching, from_ms, to_ms):
            return
        (start, end), *_ = rules.merge_all([*touching, (from_ms, to_ms)])

        def write() -> None:
            db.executemany(
                "DELETE FROM fetched WHERE symbol = ? AND from_ms = ?",
                [(symbol, old_from) for old_from, _ in touching],
            )
            db.execute("INSERT INTO fetched VALUES (?, ?, ?)", (symbol, start, end))

        self._write(db, write)

    def _write(self, db: sqlite3.Connection, statements: Callable[[], object]) -> None:
        """Run `statements` atomically inside the open transaction; commit when it is old."""
        try:
            if not db.in_transaction:
                db.execute("BEGIN IMMEDIATE")
            db.execute("SAVEPOINT append")
            try:
                statements()
            except BaseException:
                db.execute("ROLLBACK TO append")
                raise
            finally:
                db.execute("RELEASE append")
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"SQLite store {self.db_path} refused a row: {exc}") from exc
        except sqlite3.Error as exc:
            self._state = "failed"
            raise StoreError(f"write failed in SQLite store {self.db_path}: {exc}") from exc
        now = time.monotonic()
        if self._unflushed_since is None:
            self._unflushed_since = now
        if now - self._unflushed_since >= self._interval_s:
            self.flush()

    # -- reads -----------------------------------------------------------------------------

    @_guarded
    def fetched_intervals(self, symbol: str, from_ms: int, to_ms: int) -> list[tuple[int, int]]:
        """Merged fetched intervals overlapping `[from_ms, to_ms)`, clipped, ascending."""
        db = self._require_open()
        rows: list[tuple[int, int]] = db.execute(
            "SELECT from_ms, to_ms FROM fetched WHERE symbol = ? AND from_ms < ? AND to_ms > ?"
            " ORDER BY from_ms",
            (symbol, to_ms, from_ms),
        ).fetchall()
        return rules.clip(rows, from_ms, to_ms)

    def bars(
        self, symbol: str, tf: Timeframe, from_ms: int | None = None, to_ms: int | None = None
    ) -> Iterator[StoredFinal]:
        """Latest revision of each key with `from_ms <= open_ms < to_ms`, by open_ms.

        Lazy, a page of keys per query: appends while the caller iterates never disturb a live
        cursor (each page is fetched whole)."""
        with self._guard:
            self._require_open()
        return self._pages(symbol, tf, from_ms, to_ms)

    def _pages(
        self, symbol: str, tf: Timeframe, from_ms: int | None, to_ms: int | None
    ) -> Iterator[StoredFinal]:
        while True:
            sql = _LATEST
            args: list[str | int] = [symbol, tf.value]
            if from_ms is not None:
                sql, args = sql + " AND open_ms >= ?", [*args, from_ms]
            if to_ms is not None:
                sql, args = sql + " AND open_ms < ?", [*args, to_ms]
            with self._guard, rules.bulk(_PAGE):
                db = self._require_open()
                rows = db.execute(
                    sql + " GROUP BY open_ms ORDER BY open_ms LIMIT ?", [*args, _PAGE]
                ).fetchall()
                page = [self._final(symbol, tf, row) for row in rows]
            yield from page
            if len(rows) < _PAGE:
                return
            from_ms = rows[-1][0] + 1

    @_guarded
    def revisions(self, symbol: str, tf: Timeframe, open_ms: int) -> list[StoredFinal]:
        """Every stored revision of one key, rev ascending."""
        db = self._require_open()
        rows = db.execute(_REVISIONS, (symbol, tf.value, open_ms)).fetchall()
        return [self._final(symbol, tf, row) for row in rows]

    @_guarded
    def latest(self, symbol: str, tf: Timeframe, open_ms: int) -> StoredFinal | None:
        """The latest revision of one key, or None."""
        db = self._require_open()
        row = db.execute(_LATEST_ONE, (symbol, tf.value, open_ms)).fetchone()
        return None if row is None else self._final(symbol, tf, row)

    @_guarded
    def last_open_ms(self, symbol: str, tf: Timeframe) -> int | None:
        """open_ms of the newest stored bar of symbol/tf, or None."""
        db = self._require_open()
        value: int | None = db.execute(
            "SELECT max(open_ms) FROM finals WHERE symbol = ? AND tf = ?", (symbol, tf.value)
        ).fetchone()[0]
        return value

    @_guarded
    def series(self) -> list[tuple[str, Timeframe]]:
        """Every (symbol, tf) with at least one stored bar, sorted."""
        self._require_open()
        return sorted(self._series)

    # -- internals -------------------------------------------------------------------------

    def _require_open(self) -> sqlite3.Connection:
        if self._state == "open" and self._db is not None:
            return self._db
        if self._state == "failed":
            raise StoreError(
                f"SQLite store {self.db_path} failed after an I/O error; close and reopen it"
            )
        raise StoreError(
            f"SQLite store {self.db_path} is {self._state}: call open() before using it"
        )

    def _latest_of(
        self, db: sqlite3.Connection, bars: Sequence[OhlcvEvent]
    ) -> dict[tuple[str, Timeframe, int], StoredFinal]:
        """The latest stored revision of every key in `bars`, in a few indexed queries."""
        wanted: dict[tuple[str, Timeframe], set[int]] = {}
        for bar in bars:
            wanted.setdefault((bar.symbol, bar.tf), set()).add(bar.open_ms)
        known: dict[tuple[str, Timeframe, int], StoredFinal] = {}
        for (symbol, tf), opens in wanted.items():
            if (symbol, tf) not in self._series:
                continue  # nothing stored for this series yet: skip the queries
            ordered = sorted(opens)
            if len(ordered) > _CHUNK and ordered[-1] - ordered[0] < 4 * len(ordered) * tf.ms:
                # A dense batch (a backfill): one range scan beats thousands of point lookups.
                queries = [(" AND open_ms BETWEEN ? AND ?", [ordered[0], ordered[-1]])]
            else:
                queries = [
                    (f" AND open_ms IN ({','.join('?' * len(chunk))})", chunk)
                    for chunk in (ordered[i : i + _CHUNK] for i in range(0, len(ordered), _CHUNK))
                ]
            for where, args in queries:
                for row in db.execute(
                    _LATEST + where + " GROUP BY open_ms", [symbol, tf.value, *args]
                ):
                    known[(symbol, tf, row[0])] = self._final(symbol, tf, row)
        return known

    def _final(self, symbol: str, tf: Timeframe, row: Row) -> StoredFinal:
        source = _SOURCES.get(row[9])
        if source is None:
            raise StoreCorrupt(f"{self.db_path}: row {symbol} {tf} {row[0]} has source {row[9]}")
        return StoredFinal(
            symbol=symbol,
            tf=tf,
            open_ms=row[0],
            close_ms=row[2],
            open=row[3],
            high=row[4],
            low=row[5],
            close=row[6],
            volume=row[7],
            tick_count=row[8],
            complete=True,
            source=source,
            event_ts=row[10],
            rev=row[1],
            reason=row[11],
        )


def _timeframe(value: str, db_path: Path) -> Timeframe:
    tf = _TIMEFRAMES.get(value)
    if tf is None:
        raise StoreCorrupt(f"{db_path}: unknown timeframe {value!r} in table finals")
    return tf
