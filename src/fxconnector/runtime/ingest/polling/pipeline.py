"""The pipeline: ticks → previews → close detection → final 1m → SSOT → derived → sink.

Rules (DESIGN §5):
- A tick is validated (rails + calendar) and applied to the live builder; rejects and late ticks
  are counted by reason, never raised.
- Close detection (the fast path): once a minute has ended plus the safety delay, its 1m bar is
  fetched from the broker's history. History bars are checked against the contract; a bar in a
  closed minute or off its bucket is refused and counted. Fetched minutes with no bar are quiet,
  except a minute in which we saw ticks: the broker's history may lag, so that minute is retried
  with backoff and, after `max_empty_retries`, left missing and reported (never invented).
- A failed history call is retried with capped backoff; the symbol's progress does not move.
- Finals are appended to the store, made durable (flush), then handed to the sink. Derived bars
  follow from the final 1m (DerivedBuilder). A repeated final is a no-op; a different one is a
  revision and is republished.
- `advance(now)` is the one entry point for time: the live runner calls it on a timer, a replay
  calls it with tick time.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from fxconnector.core.builders.live import LiveBuilder
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.errors import BadBrokerData, ContractViolation, TransientIOError
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.status import ErrorEntry
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import MINUTE_MS, Timeframe, iso_utc
from fxconnector.core.validation.ticks import TickRails, check_tick
from fxconnector.core.validation.validator import bar_problems
from fxconnector.runtime.governance.rails import HistoryBudget, Priority
from fxconnector.runtime.ingest.polling.derived_builder import DerivedBuilder
from fxconnector.runtime.publish.sink import EventSink
from fxconnector.runtime.store.port import AppendOutcome, FinalStore

HistoryFetch = Callable[[str, int, int], Awaitable[list[OhlcvEvent]]]
#: Runs blocking store work (the fsync of a flush) off the event loop: asyncio.to_thread. A test
#: that drives fake time by loop turns runs it inline instead.
Offload = Callable[[Callable[[], None]], Awaitable[None]]
FAST_PATH = "fast_path"
#: Work of one derive slice (a few ms) before the event loop gets its turn back, in minutes of
#: 1m read (see derived_builder.BUCKET_COST_MINUTES): one 1d bucket, or two 5m buckets.
DERIVE_SLICE_MINUTES = 250
BROKER_CORRECTION = "broker correction"


@dataclass(slots=True)
class PipelineStats:
    """Counters the status and the replay summary report."""

    ticks: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    finals: collections.Counter[str] = field(default_factory=collections.Counter)
    revisions: collections.Counter[str] = field(default_factory=collections.Counter)
    history_requests: int = 0
    history_failures: int = 0
    history_bars_refused: int = 0
    empty_history_retries: int = 0
    errors: collections.deque[ErrorEntry] = field(
        default_factory=lambda: collections.deque(maxlen=50)
    )


@dataclass(slots=True)
class RangeResult:
    """What one command fetch of a range did."""

    symbol: str
    from_ms: int
    to_ms: int
    bars_fetched: int = 0
    new_bars: int = 0
    revisions: int = 0
    derived: int = 0
    failed_chunks: list[tuple[int, int, str]] = field(default_factory=list)


@dataclass(slots=True)
class _SymbolProgress:
    next_minute_ms: int  # the first minute not yet fetched by the fast path
    retry_at_ms: int = 0  # after a failed call, no new call before this
    failures: int = 0
    ticked: set[int] = field(default_factory=set)  # minutes in which ticks were applied
    empty: dict[int, tuple[int, int]] = field(default_factory=dict)  # minute -> (tries, due)


class Pipeline:
    """One symbol set's path from ticks to durable, published bars."""

    def __init__(
        self,
        *,
        history: HistoryFetch,
        store: FinalStore,
        calendars: Mapping[str, TradingCalendar],
        timeframes: Sequence[Timeframe],
        spec: BarSpec,
        rails: TickRails,
        sink: EventSink,
        start_ms: Mapping[str, int],
        safety_delay_ms: int = 2_000,
        max_chunk_minutes: int = 1_440,
        max_empty_retries: int = 5,
        retry_base_ms: int = 2_000,
        retry_cap_ms: int = 60_000,
        flush_each_advance: bool = True,
        budget: HistoryBudget | None = None,
        offload: Offload = asyncio.to_thread,
    ) -> None:
        self._raw_history = history
        self._offload = offload
        self._budget = budget
        self._store = store
        self._calendars = calendars
        self._rails = rails
        self._sink = sink
        self._safety_delay_ms = safety_delay_ms
        self._max_chunk_ms = max_chunk_minutes * MINUTE_MS
        self._max_empty_retries = max_empty_retries
        self._retry_base_ms = retry_base_ms
        self._retry_cap_ms = retry_cap_ms
        self._flush_each_advance = flush_each_advance
        self.timeframes = tuple(timeframes)
        self.builder = LiveBuilder(calendars, timeframes, spec)
        self.derived = DerivedBuilder(store, calendars, timeframes)
        self._stats = PipelineStats()
        self._progress = {
            symbol: _SymbolProgress(start - start % MINUTE_MS) for symbol, start in start_ms.items()
        }
        self._now_ms = 0
        self._pending_publish: list[OhlcvEvent] = []
        self._sessions: dict[str, tuple[int, int]] = {}
        self._outages: list[tuple[int, int]] = []
        # Hot-path copies (one attribute load each instead of two).
        self._max_inversion = rails.max_spread_inversion
        self._epoch_rail_ms = rails.epoch_rail_ms
        self._max_future_ms = rails.max_future_ms
        self._update = self.builder.update
        self._applied = dict.fromkeys(start_ms, 0)

    # -- ticks ------------------------------------------------------------------------------

    def on_tick(self, tick: Tick, now_ms: int) -> bool:
        """Validate and apply one tick; True when it was applied."""
        symbol = tick.symbol
        ts = tick.ts_ms
        bid = tick.bid
        ask = tick.ask
        session = self._sessions.get(symbol)
        # Fast path: the conjunction of every rail for the common good tick (a property test
        # holds it equal to check_tick); anything else asks check_tick for the reason.
        if not (
            session is not None
            and session[0] <= ts < session[1]
            and 0.0 < bid < _INF
            and 0.0 < ask < _INF
            and bid - ask <= self._max_inversion
            and self._epoch_rail_ms <= ts <= now_ms + self._max_future_ms
        ) and not self._slow_check(tick, now_ms):
            return False
        closed = self._update(tick)
        if closed is None:
            return False
        self._applied[symbol] += 1
        if closed:
            self._closed_previews(closed)
        return True

    def _slow_check(self, tick: Tick, now_ms: int) -> bool:
        """check_tick with the session looked up (and cached); count a reject."""
        calendar = self._calendars.get(tick.symbol)
        session = calendar.session_at(tick.ts_ms) if calendar is not None else None
        if session is not None:
            self._sessions[tick.symbol] = session
        reason = check_tick(
            self._rails, tick.symbol, tick.bid, tick.ask, tick.ts_ms, now_ms, session is not None
        )
        if reason is None:
            return True
        self._stats.rejected[reason.value] += 1
        return False

    @property
    def stats(self) -> PipelineStats:
        """The counters, with the applied-tick count brought up to date."""
        self._stats.ticks = sum(self._applied.values())
        return self._stats

    def ticks_by_symbol(self) -> dict[str, int]:
        """Applied ticks per symbol."""
        return dict(self._applied)

    @property
    def late_ticks(self) -> int:
        return sum(self.builder.late_ticks.values())

    def _closed_previews(self, closed: Sequence[OhlcvEvent]) -> None:
        for event in closed:
            if event.tf is Timeframe.M1:
                self._progress[event.symbol].ticked.add(event.open_ms)
        self._sink.previews(closed)

    # -- time -------------------------------------------------------------------------------

    def close_previews(self, now_ms: int) -> None:
        """Close the preview buckets that ended by `now_ms` (no broker call, never waits)."""
        closed = self.builder.close_until(now_ms)
        if closed:
            self._closed_previews(closed)

    async def advance(self, now_ms: int) -> None:
        """Move to `now_ms`: close previews, fetch ended minutes, derive, publish."""
        self._now_ms = max(self._now_ms, now_ms)
        self.close_previews(now_ms)
        wrote = False
        for symbol, progress in self._progress.items():
            wrote |= await self._fast_path(symbol, progress, now_ms)
            wrote |= await self._retry_empty(symbol, progress, now_ms)
        derived = self.derived.run(now_ms, max_minutes=DERIVE_SLICE_MINUTES)
        more = self.derived.more_ready
        await self._publish_durable(derived, self._flush_each_advance, coverage=wrote)
        if more:
            await self.derive_ready(now_ms, flush=self._flush_each_advance)

    async def derive_ready(
        self, now_ms: int, *, flush: bool = True, builder: DerivedBuilder | None = None
    ) -> tuple[int, int]:
        """Derive every ready dirty bucket (of `builder`, by default the live one) in bounded
        slices; each slice is flushed, then published, then the event loop gets a turn.
        Returns (new, revised) bars published."""
        derived_builder = self.derived if builder is None else builder
        new = revised = 0
        while True:
            derived = derived_builder.run(now_ms, max_minutes=DERIVE_SLICE_MINUTES)
            more = derived_builder.more_ready  # read before awaiting: another task may run
            await self._publish_durable(derived, flush)
            revised += sum(1 for e in derived if e.rev)
            new += sum(1 for e in derived if not e.rev)
            if not more:
                return new, revised
            await asyncio.sleep(0)

    def flush(self) -> None:
        """Make everything appended so far durable."""
        self._store.flush()

    def progress_ms(self, symbol: str) -> int:
        """The first minute of `symbol` the fast path has not fetched yet."""
        return self._progress[symbol].next_minute_ms

    async def _fast_path(self, symbol: str, progress: _SymbolProgress, now_ms: int) -> bool:
        ready_until = now_ms - self._safety_delay_ms
        ready_until -= ready_until % MINUTE_MS
        if ready_until <= progress.next_minute_ms or now_ms < progress.retry_at_ms:
            return False
        calendar = self._calendars[symbol]
        wrote = False
        while progress.next_minute_ms < ready_until:
            start = progress.next_minute_ms
            end = min(ready_until, start + self._max_chunk_ms)
            intervals = calendar.open_intervals(start, end)
            if not intervals:
                progress.next_minute_ms = end
                continue
            fetch_from, fetch_to = intervals[0][0], intervals[-1][1]
            if not await self._fetch(symbol, progress, fetch_from, fetch_to, now_ms):
                return wrote
            wrote = True
            progress.next_minute_ms = end
            progress.ticked = {m for m in progress.ticked if m >= end}
        return wrote

    async def _fetch(
        self, symbol: str, progress: _SymbolProgress, from_ms: int, to_ms: int, now_ms: int
    ) -> bool:
        """Fetch, check, store one range; False when the call failed (retry later)."""
        self._stats.history_requests += 1
        try:
            bars = await self._history(symbol, from_ms, to_ms, FAST_PATH, Priority.FAST)
        except (TransientIOError, BadBrokerData) as exc:
            self._stats.history_failures += 1
            progress.failures += 1
            backoff = min(self._retry_cap_ms, self._retry_base_ms * 2 ** (progress.failures - 1))
            progress.retry_at_ms = now_ms + backoff
            self._error(now_ms, "history.failed", f"{symbol} {iso_utc(from_ms)}: {exc}")
            return False
        progress.failures = 0
        progress.retry_at_ms = 0
        accepted = self._check_history(symbol, bars, from_ms, to_ms, now_ms)
        got = {bar.open_ms for bar in accepted}
        # Minutes we saw ticks in, and minutes of a broker outage (we could not have seen
        # ticks then), are not proven quiet by an empty answer.
        doubtful = set(progress.ticked) | self._outage_minutes(from_ms, to_ms)
        suspicious = sorted(m for m in doubtful if from_ms <= m < to_ms and m not in got)
        for minute in suspicious:
            tries, _ = progress.empty.get(minute, (0, 0))
            progress.empty.setdefault(minute, (tries, now_ms + self._retry_base_ms))
        self._store_finals(symbol, accepted)
        for start, end in _minus(from_ms, to_ms, suspicious):
            self._store.mark_fetched(symbol, start, end)
        self.derived.touch(symbol, from_ms, to_ms)
        return True

    def note_outage(self, from_ms: int, to_ms: int) -> None:
        """The broker stream was down (or stale) over `[from_ms, to_ms)`: no minute in it is
        quiet just because history has no bar; such minutes are retried, then left missing
        for tail_guard."""
        start = from_ms - from_ms % MINUTE_MS
        if to_ms > start:
            self._outages.append((start, to_ms))

    def _outage_minutes(self, from_ms: int, to_ms: int) -> set[int]:
        minutes: set[int] = set()
        for start, end in self._outages:
            lo, hi = max(start, from_ms), min(end, to_ms)
            minutes.update(range(lo - lo % MINUTE_MS, hi, MINUTE_MS))
        return minutes

    async def _retry_empty(self, symbol: str, progress: _SymbolProgress, now_ms: int) -> bool:
        """Ask again for minutes whose history came back empty although ticks were seen."""
        wrote = False
        for minute, (tries, due) in sorted(progress.empty.items()):
            if due > now_ms:
                continue
            self._stats.empty_history_retries += 1
            self._stats.history_requests += 1
            try:
                bars = await self._history(
                    symbol, minute, minute + MINUTE_MS, FAST_PATH, Priority.FAST
                )
            except (TransientIOError, BadBrokerData) as exc:
                self._stats.history_failures += 1
                bars = []
                self._error(now_ms, "history.failed", f"{symbol} {iso_utc(minute)}: {exc}")
            accepted = self._check_history(symbol, bars, minute, minute + MINUTE_MS, now_ms)
            if accepted:
                del progress.empty[minute]
                self._store_finals(symbol, accepted)
                self.derived.touch(symbol, minute, minute + MINUTE_MS)
                wrote = True
            elif tries + 1 >= self._max_empty_retries:
                del progress.empty[minute]
                self._error(
                    now_ms,
                    "history.no_bar",
                    f"{symbol} {iso_utc(minute)}: ticks were seen but the broker's history has "
                    f"no bar after {tries + 1} tries; left missing for tail_guard",
                )
            else:
                delay = min(self._retry_cap_ms, self._retry_base_ms * 2 ** (tries + 1))
                progress.empty[minute] = (tries + 1, now_ms + delay)
        return wrote

    async def _history(
        self, symbol: str, from_ms: int, to_ms: int, caller: str, priority: Priority
    ) -> list[OhlcvEvent]:
        """One broker history call, through the shared budget when there is one."""
        if self._budget is None:
            return await self._raw_history(symbol, from_ms, to_ms)
        async with self._budget.slot(caller, priority):
            return await self._raw_history(symbol, from_ms, to_ms)

    async def fetch_range(
        self,
        symbol: str,
        from_ms: int,
        to_ms: int,
        *,
        caller: str,
        now_ms: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> RangeResult:
        """Fetch `[from_ms, to_ms)` of 1m history for a command (heavy priority), store it,
        derive what it touched and publish new bars and revisions. Retries nothing: a failed
        chunk is reported and the rest goes on."""
        calendar = self._calendars[symbol]
        start = from_ms - from_ms % MINUTE_MS
        end = min(to_ms, now_ms - self._safety_delay_ms)
        end -= end % MINUTE_MS
        chunks = _chunks(calendar.open_intervals(start, end), self._max_chunk_ms)
        # The command's buckets are its own: the live loop's advance never does its heavy work.
        builder = DerivedBuilder(self._store, self._calendars, self.timeframes)
        result = RangeResult(symbol=symbol, from_ms=start, to_ms=max(start, end))
        for index, (a, b) in enumerate(chunks):
            try:
                bars = await self._history(symbol, a, b, caller, Priority.HEAVY)
            except (TransientIOError, BadBrokerData) as exc:
                self._stats.history_failures += 1
                result.failed_chunks.append((a, b, str(exc)[:200]))
                self._error(now_ms, "history.failed", f"{caller} {symbol} {iso_utc(a)}: {exc}")
            else:
                self._stats.history_requests += 1
                accepted = self._check_history(symbol, bars, a, b, now_ms)
                fresh = self._store_finals(symbol, accepted)
                result.new_bars += sum(1 for e in fresh if e.rev == 0)
                result.revisions += sum(1 for e in fresh if e.rev > 0)
                self._store.mark_fetched(symbol, a, b)
                builder.touch(symbol, a, b)
                result.bars_fetched += len(accepted)
            # Per chunk (a few files), off the event loop.
            await self._offload(self._store.flush)
            if progress is not None:
                progress(index + 1, len(chunks))
            # A slice ends here: the fast path, HTTP and the surface get the loop back.
            await asyncio.sleep(0)
        await self._offload(self._store.flush)  # the 1m finals are durable before publishing
        new, revised = await self.derive_ready(now_ms, builder=builder)
        result.derived += new + revised
        await self._publish_durable((), True)  # the 1m finals, when nothing above was ready
        return result

    def _check_history(
        self, symbol: str, bars: Sequence[OhlcvEvent], from_ms: int, to_ms: int, now_ms: int
    ) -> list[OhlcvEvent]:
        calendar = self._calendars[symbol]
        accepted = []
        for bar in bars:
            problems = [
                p.message
                for p in bar_problems(bar, calendar, symbols={symbol}, timeframes={Timeframe.M1})
            ]
            if not bar.complete:
                problems.append("history bar is not complete")
            if not from_ms <= bar.open_ms < to_ms:
                problems.append(f"outside the requested range [{from_ms}, {to_ms})")
            elif not calendar.is_open(bar.open_ms):
                problems.append("in a minute the calendar calls closed")
            if problems:
                self._stats.history_bars_refused += 1
                self._error(
                    now_ms,
                    "history.bad_bar",
                    f"{symbol} {iso_utc(bar.open_ms)}: " + "; ".join(problems),
                )
                continue
            accepted.append(bar)
        return accepted

    def _store_finals(self, symbol: str, bars: Sequence[OhlcvEvent]) -> list[OhlcvEvent]:
        """Append `bars`; the new bars and revisions (queued for publishing) are returned."""
        if not bars:
            return []
        try:
            results = self._store.append(bars, reason=BROKER_CORRECTION)
        except ContractViolation as exc:  # pragma: no cover - _check_history refused these
            self._error(self._now_ms, "store.refused", f"{symbol}: {exc}")
            return []
        fresh: list[OhlcvEvent] = [
            r.stored for r in results if r.outcome is not AppendOutcome.DUPLICATE
        ]
        self._pending_publish.extend(fresh)
        return fresh

    async def _publish_durable(
        self, derived: Sequence[OhlcvEvent], flush: bool, *, coverage: bool = False
    ) -> None:
        """Flush (off the event loop) then publish what is pending now and `derived`.

        The events are taken before the flush starts, so the flush covers every one of them
        even when another task (a command, the live loop) appends or publishes meanwhile;
        `coverage` flushes even with nothing to publish (coverage lines were written)."""
        events = [*self._pending_publish, *derived]
        self._pending_publish.clear()
        if flush and (events or coverage):
            await self._offload(self._store.flush)
        self._publish(events)

    def _publish(self, events: Sequence[OhlcvEvent]) -> None:
        if not events:
            return
        for event in events:
            (self._stats.revisions if event.rev else self._stats.finals)[event.tf.value] += 1
        self._sink.finals(events)

    def _error(self, now_ms: int, code: str, message: str) -> None:
        self._stats.errors.append(ErrorEntry(ts=now_ms, code=code, message=message[:500]))


_INF = math.inf


def _chunks(intervals: Sequence[tuple[int, int]], size_ms: int) -> list[tuple[int, int]]:
    """Open intervals cut into pieces of at most `size_ms`."""
    out = []
    for start, end in intervals:
        cursor = start
        while cursor < end:
            out.append((cursor, min(end, cursor + size_ms)))
            cursor += size_ms
    return out


def _minus(from_ms: int, to_ms: int, minutes: Sequence[int]) -> list[tuple[int, int]]:
    """`[from_ms, to_ms)` without the given minutes, as ranges."""
    out = []
    cursor = from_ms
    for minute in minutes:
        if minute > cursor:
            out.append((cursor, minute))
        cursor = max(cursor, minute + MINUTE_MS)
    if cursor < to_ms:
        out.append((cursor, to_ms))
    return out
