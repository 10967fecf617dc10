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
  flushed by the next `append()`/`mark_fetched()` unless a flush ran within the interval (an
  owner that flushes itself, in a worker thread, is never overtaken by an fsync on its
  appending thread), so the interval bounds the delay only while writes keep coming. Whoever
  needs an acknowledgement calls `flush()`. A flush fsyncs outside the store's lock (it may
  run in a worker thread while the loop appends) and two flushes never
  overlap, so one returns only after every append before it is on disk, including appends an
  earlier, still running flush took; the interval flush is skipped while another one runs.
- `open()` is recovery: any file not ending in a newline loses its torn tail (reported); every
  line is decoded and checked against the contract, its file and the rev sequence. A bad line
  in the middle of a file (or a file with a foreign name) is skipped and reported in
  `RecoveryReport.corrupt_lines` as "path:LINE: reason"; every other line is served (a day read
  later on demand applies the same checks, silently: open() reported them). The UTC day of a
  skipped 1m line loses its fetched coverage, so its minutes are `missing` (asked again), never
  `quiet`. A later revision whose predecessor line is unreadable is kept (the gap is reported).
  The bytes on disk are never rewritten: `fxconnector audit` shows the same.
- `open()` settles the manifest (creates it in a new store, refuses a store that is not what
  the writer wants); `append()` refuses a bar off the manifest's grid (`manifest.GridCheck`).
- Memory is bounded, whatever the history's length (issue 11 point 5): `open()` checks every
  line but keeps only a small index per day file (first/last open_ms, key count); the bars of a
  day are read from its file on demand into an LRU of days bounded in bars (`cache_bars`).
  Reads touch only the day files of the range asked for, lazily, a day at a time; appends find
  the latest revision of a key in its (cached) day. A day is cached whole or not at all.
- One writer owns the store; readers may call from other threads (the HTTP range reads run off
  the event loop): every public method holds one lock, briefly (a lazy read takes it per day).
- A failed write or fsync leaves disk and index possibly out of step, so the store refuses
  further use until it is closed and reopened (recovery rebuilds the index from disk).
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import numpy as np

from fxconnector.core.builders.vector import BarColumns
from fxconnector.core.errors import ContractViolation, StoreError
from fxconnector.core.model.bar import OhlcvEvent, Source, StoredFinal
from fxconnector.core.time_geom import DAY_MS, Timeframe
from fxconnector.core.utils import json_codec
from fxconnector.runtime.store import manifest, rules
from fxconnector.runtime.store.jsonl_files import (
    EPOCH_ORDINAL,
    FETCHED_NAME,
    FINAL_DECODER,
    DayFiles,
    FetchedLine,
    decode_lines,
    good_bars,
    open_files_cap,
    sync,
)
from fxconnector.runtime.store.jsonl_index import DayCache, DayInfo, DaySeries, SeriesIndex
from fxconnector.runtime.store.jsonl_load import load_all
from fxconnector.runtime.store.lock import WriterLock
from fxconnector.runtime.store.port import AppendResult, RecoveryReport

#: Bars of whole day files kept in memory (about 0.5 KB each): today's files of every series of
#: a live connector with 10 symbols hold about 25k at the end of the day.
CACHE_BARS: Final = 50_000


class JsonlStore:
    """FinalStore on JSON-lines files under `root`."""

    def __init__(
        self,
        root: Path,
        fsync_interval_ms: int = 50,
        cache_bars: int = CACHE_BARS,
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
        self._guard = threading.RLock()
        self._sync_lock = threading.Lock()  # held by the one flush that is fsyncing
        self._files = DayFiles(open_files_cap())
        self._index: dict[tuple[str, Timeframe], SeriesIndex] = {}
        self._cache = DayCache(cache_bars)
        self._fetched: dict[str, list[rules.Interval]] = {}
        self._day_names: dict[int, str] = {}
        self._state = "unopened"
        self._unflushed_since: float | None = None
        self._flush_seen = float("-inf")  # when a flush (of any caller) last began or ended

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> RecoveryReport:
        """Take the writer lock, repair torn tails, load and check every line."""
        if self._state == "open":
            raise StoreError(f"JSONL store {self.root} is already open")
        self._lock.acquire()
        self._index, self._fetched = {}, {}
        self._cache.clear()
        torn: list[str] = []
        corrupt: list[str] = []
        try:
            with rules.bulk(rules.BULK_MIN):  # a store may hold millions of lines
                files = load_all(self.root, self._index, self._fetched, torn, corrupt)
            empty = not self._fetched and not any(index.days for index in self._index.values())
            self.grid = manifest.open_guard(self.root, self._identity, empty=empty)
        except OSError as exc:
            self._lock.release()
            raise StoreError(f"cannot read JSONL store {self.root}: {exc}") from exc
        except BaseException:
            self._lock.release()
            raise
        self._state, self._unflushed_since = "open", None
        loaded = sum(d.count for index in self._index.values() for d in index.info.values())
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
            self._cache.clear()
            self._lock.release()
            self._state = "closed"

    # -- writes ----------------------------------------------------------------------------

    def append(self, bars: Sequence[OhlcvEvent], reason: str = "") -> list[AppendResult]:
        """Append final bars; see `rules` for validation and outcomes."""
        with self._guard, rules.bulk(len(bars)):
            self._require_open()
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
            for (symbol, tf, day), group in by_file.items():
                self._indexed(symbol, tf, day, group)
        return results

    def append_columns(
        self, symbol: str, tf: Timeframe, columns: BarColumns, source: Source
    ) -> list[StoredFinal]:
        """Append the bars of `columns` as new finals (rev 0) of days the series lacks; see
        the port. A new day file is indexed, not cached: it is read back on demand."""
        with self._guard, rules.bulk(len(columns)):
            self._require_open()
            bars = rules.stored_columns(symbol, tf, source, columns)
            if self.grid is not None:
                self.grid.check_opens(bars, columns.open_ms)
            index = self._index.setdefault((symbol, tf), SeriesIndex())
            days = columns.open_ms // DAY_MS
            cuts = [0, *(np.flatnonzero(days[1:] != days[:-1]) + 1).tolist(), len(bars)]
            spans = [(int(days[a]), a, b) for a, b in itertools.pairwise(cuts) if b > a]
            held = [day for day, _, _ in spans if day in index.info]
            if held:
                raise ContractViolation(
                    f"{symbol} {tf.value}: the store already holds a bar on the UTC day "
                    f"{self._day_path(symbol, tf, held[0]).stem}; append them one by one"
                )
            self._write(
                [
                    (self._day_path(symbol, tf, day), json_codec.encode_lines(bars[a:b]))
                    for day, a, b in spans
                ]
            )
            for day, a, b in spans:
                index.add(day, DayInfo(b - a, bars[a].open_ms, bars[b - 1].open_ms))
            return bars

    def _indexed(self, symbol: str, tf: Timeframe, day: int, bars: list[StoredFinal]) -> None:
        """Bring the index (and the cached day, if any) up to date with the bars written to one
        day file, in the order written (one index and cache look-up per file, not per bar)."""
        key = (symbol, tf)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = SeriesIndex()
        info = index.info.get(day)
        if info is None:  # a new file: cached whole, as written
            fresh = DaySeries()
            for bar in bars:
                fresh.put(bar)
            opens = fresh.by_open
            index.add(day, DayInfo(len(opens), min(opens), max(opens)))
            self._cache.put((*key, day), fresh)
            return
        cached = self._cache.get((*key, day))
        new = 0
        for bar in bars:
            if bar.rev == 0:  # a key's first line: the file holds one more key
                new += 1
                info.first_open = min(info.first_open, bar.open_ms)
                info.last_open = max(info.last_open, bar.open_ms)
            if cached is not None:  # an uncached day is read from its file, which has the bar
                cached.put(bar)
        info.count += new
        if cached is not None:
            self._cache.grew(new)

    def flush(self) -> None:
        """Make every append so far durable. The fsyncs run outside the store's lock, so a
        caller may run this in a worker thread while the event loop goes on appending."""
        with self._sync_lock:
            self._flush()

    def _flush(self) -> None:
        """Take what is dirty (under the lock), fsync it (outside). The caller holds
        `_sync_lock`."""
        with self._guard:
            self._require_open()
            fds, dirs = self._files.takesync()
            self._unflushed_since = None
            self._flush_seen = time.monotonic()
        try:
            sync(fds, dirs)
            self._flush_seen = time.monotonic()
        except OSError as exc:
            # After a failed fsync the kernel may have dropped the dirty pages: nothing written
            # since the last good sync can be trusted, so only a reopen (recovery) may go on.
            with self._guard:
                self._state = "failed"
            raise StoreError(f"fsync failed in JSONL store {self.root}: {exc}") from exc

    def mark_fetched(self, symbol: str, from_ms: int, to_ms: int) -> None:
        """Record that 1m history for `[from_ms, to_ms)` was fetched; nothing if already known."""
        with self._guard:
            self._mark_fetched(symbol, from_ms, to_ms)

    def _mark_fetched(self, symbol: str, from_ms: int, to_ms: int) -> None:
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
        # Bounding the delay only, for writers that do not flush themselves: while an owner's
        # flushes keep coming (one began or ended within the interval, e.g. the pipeline's
        # per-answer group commit in a worker thread, slow on a busy disk), or one is fsyncing,
        # it is skipped (never waits): an append never fsyncs on the caller's thread (the event
        # loop) in the gap between two of the owner's flushes.
        if (
            now - self._unflushed_since >= self._interval_s
            and now - self._flush_seen >= self._interval_s
            and self._sync_lock.acquire(False)
        ):
            try:
                self._flush()
            finally:
                self._sync_lock.release()

    # -- reads -----------------------------------------------------------------------------

    def fetched_intervals(self, symbol: str, from_ms: int, to_ms: int) -> list[tuple[int, int]]:
        """Merged fetched intervals overlapping `[from_ms, to_ms)`, clipped, ascending."""
        with self._guard:
            self._require_open()
            return rules.clip(self._fetched.get(symbol, []), from_ms, to_ms)

    def bars(
        self, symbol: str, tf: Timeframe, from_ms: int | None = None, to_ms: int | None = None
    ) -> Iterator[StoredFinal]:
        """Latest revision of each key with `from_ms <= open_ms < to_ms`, by open_ms.

        Lazy: the day files of the range are read one at a time as the caller iterates (each
        day is a snapshot: appends while the caller iterates do not disturb it)."""
        with self._guard:
            self._require_open()
            index = self._index.get((symbol, tf))
            if index is None:
                return iter(())
            days = index.days
            low = 0 if from_ms is None else bisect_left(days, from_ms // DAY_MS)
            high = len(days) if to_ms is None else bisect_left(days, -(-to_ms // DAY_MS))
            wanted = days[low:high]
        return self._read_days(symbol, tf, wanted, from_ms, to_ms)

    def _read_days(
        self, symbol: str, tf: Timeframe, days: list[int], from_ms: int | None, to_ms: int | None
    ) -> Iterator[StoredFinal]:
        for day in days:
            with self._guard:
                self._require_open()
                series = self._day(symbol, tf, day)
                opens = series.opens()
                low = 0 if from_ms is None else bisect_left(opens, from_ms)
                high = len(opens) if to_ms is None else bisect_left(opens, to_ms)
                by_open = series.by_open
                chunk = [by_open[open_ms] for open_ms in opens[low:high]]
            yield from chunk

    def revisions(self, symbol: str, tf: Timeframe, open_ms: int) -> list[StoredFinal]:
        """Every stored revision of one key, rev ascending (re-read from its day file)."""
        latest = self.latest(symbol, tf, open_ms)
        if latest is None:
            return []
        if latest.rev == 0:
            return [latest]
        path = self._day_path(symbol, tf, open_ms // DAY_MS)
        try:
            with self._guard:  # no append is half-written while the file is read
                data = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        _, values = decode_lines(FINAL_DECODER, path, data, [])  # open() reported bad lines
        found = [bar for bar in values if bar.open_ms == open_ms]
        return sorted(found, key=lambda bar: bar.rev)

    def latest(self, symbol: str, tf: Timeframe, open_ms: int) -> StoredFinal | None:
        """The latest revision of one key, or None."""
        with self._guard:
            self._require_open()
            return self._lookup(symbol, tf, open_ms)

    def last_open_ms(self, symbol: str, tf: Timeframe) -> int | None:
        """open_ms of the newest stored bar of symbol/tf, or None."""
        with self._guard:
            self._require_open()
            index = self._index.get((symbol, tf))
            if index is None or not index.days:
                return None
            return index.info[index.days[-1]].last_open

    def series(self) -> list[tuple[str, Timeframe]]:
        """Every (symbol, tf) with at least one stored bar, sorted."""
        with self._guard:
            self._require_open()
            return sorted(key for key, index in self._index.items() if index.days)

    @property
    def cached_bars(self) -> int:
        """Bars of whole days held in memory now (at most `cache_bars`, or one day)."""
        return self._cache.bars

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
        index = self._index.get((symbol, tf))
        if index is None:
            return None
        day = open_ms // DAY_MS
        info = index.info.get(day)
        if info is None or not info.first_open <= open_ms <= info.last_open:
            return None  # known absent without reading the day
        return self._day(symbol, tf, day).by_open.get(open_ms)

    def _day(self, symbol: str, tf: Timeframe, day: int) -> DaySeries:
        """The bars of one indexed day file, from the cache or read from disk into it."""
        key = (symbol, tf, day)
        series = self._cache.get(key)
        if series is not None:
            return series
        path = self._day_path(symbol, tf, day)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        series = DaySeries()
        with rules.bulk(rules.BULK_MIN):  # open() reported what these checks skip
            series.by_open = good_bars(path, data, symbol, tf, day, [], set())
        series.order = sorted(series.by_open)
        self._cache.put(key, series)
        return series

    def _day_path(self, symbol: str, tf: Timeframe, day: int) -> Path:
        name = self._day_names.get(day)
        if name is None:
            name = self._day_names[day] = f"{dt.date.fromordinal(EPOCH_ORDINAL + day)}.jsonl"
        return self.root / symbol / tf.value / name
