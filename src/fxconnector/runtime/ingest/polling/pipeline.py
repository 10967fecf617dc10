"""The pipeline: ticks → previews → close detection → final 1m → SSOT → derived → sink.

Rules (DESIGN §5):
- A tick is validated (rails + calendar) and applied to the live builder; rejects and late ticks
  are counted by reason, never raised.
- Close detection (the fast path): once a minute has ended plus the safety delay, its 1m bar is
  fetched from the broker's history. History bars are checked against the contract; a bad
  candle (refused by the adapter or here: off its bucket, in a closed minute, ...) rejects
  itself only, counted by reason and sampled in `errors[]`; the rest of the answer is stored and
  the bad minute stays missing (repair's job).
- What is quiet is decided by one rule, `core.coverage.prove_quiet`: an empty minute is quiet
  only when the same answer holds a later bar or the broker's completeness signal covers it,
  and never when ticks were seen in it. The empty minutes after an answer's last bar stay
  pending: each fast-path call asks again from the first pending minute (so the answer that
  shows a later bar covers them too). A minute with ticks but no bar although the broker has
  passed it is retried with backoff and, after `max_empty_retries`, left missing and reported.
- A failed history call is retried with capped backoff; the symbol's progress does not move.
  A symbol whose proven frontier trails "now" by more than `stall_after_ms` of open market
  time is reported by `stalled()` (a degraded reason and a metric, never silence).
- Finals are appended to the store, made durable (flush), then handed to the sink. Derived bars
  follow from the final 1m (DerivedBuilder). A repeated final is a no-op; a different one is a
  revision and is republished.
- `advance(now)` is the one entry point for time: the live runner calls it on a timer, a replay
  calls it with tick time.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from fxconnector.core.builders.live import LiveBuilder
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.coverage import AnswerProof, prove_quiet
from fxconnector.core.errors import BadBrokerData, ContractViolation, TransientIOError
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.status import ErrorEntry
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import MINUTE_MS, Timeframe, iso_utc
from fxconnector.core.validation.ticks import TickRails, check_tick
from fxconnector.core.validation.validator import bar_problems
from fxconnector.runtime.governance.rails import HistoryBudget, Priority
from fxconnector.runtime.ingest.broker.port import HistoryAnswer
from fxconnector.runtime.ingest.polling.derived_builder import DerivedBuilder
from fxconnector.runtime.publish.sink import EventSink
from fxconnector.runtime.store.port import AppendOutcome, FinalStore

#: A broker's `history_1m`; a plain list of bars is an answer with no refused candle and no
#: completeness signal.
HistoryFetch = Callable[[str, int, int], Awaitable[HistoryAnswer | Sequence[OhlcvEvent]]]
#: Runs blocking store work (the fsync of a flush) off the event loop: asyncio.to_thread. A test
#: that drives fake time by loop turns runs it inline instead.
Offload = Callable[[Callable[[], None]], Awaitable[None]]
FAST_PATH = "fast_path"
#: Work of one derive slice (a few ms) before the event loop gets its turn back, in minutes of
#: 1m read (see derived_builder.BUCKET_COST_MINUTES): one 1d bucket, or two 5m buckets.
DERIVE_SLICE_MINUTES = 250
BROKER_CORRECTION = "broker correction"
#: Re-asks of one command chunk whose answers end early, before its tail is left pending.
MAX_ASKS_PER_CHUNK = 12
#: Fast-path calls per symbol in one advance (a catch-up continues at the next advance).
MAX_ASKS_PER_ADVANCE = 8
#: How far past a command chunk's end a probe looks for a later bar (open market time).
PROBE_MS = 60 * MINUTE_MS


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
    #: Refused history candles by reason (the adapter's or the pipeline's check).
    candles_refused: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Open minutes the fast path gave up proving (no later bar in a whole chunk): missing.
    unproven_minutes: int = 0
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
    refused: int = 0
    failed_chunks: list[tuple[int, int, str]] = field(default_factory=list)
    #: Ranges the broker has not provably passed (its answers ended early): still missing.
    pending: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class _SymbolProgress:
    next_minute_ms: int  # the first minute not yet fetched by the fast path
    pending_ms: int  # the first minute the broker has not provably passed (final/quiet below)
    retry_at_ms: int = 0  # after a failed call, no new call before this
    failures: int = 0
    ticked: set[int] = field(default_factory=set)  # minutes in which ticks were applied
    empty: dict[int, tuple[int, int]] = field(default_factory=dict)  # minute -> (tries, due)
    given_up: set[int] = field(default_factory=set)  # ticked minutes reported as no_bar
    last_ask: tuple[int, int] = (0, 0)  # the fast path's last asked window
    advanced_ms: int | None = None  # when pending_ms last moved (None: not started)


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
        stall_after_ms: int = 600_000,
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
        self._stall_after_ms = stall_after_ms
        self.timeframes = tuple(timeframes)
        self.builder = LiveBuilder(calendars, timeframes, spec)
        self.derived = DerivedBuilder(store, calendars, timeframes)
        self._stats = PipelineStats()
        self._progress = {
            symbol: _SymbolProgress(start - start % MINUTE_MS, start - start % MINUTE_MS)
            for symbol, start in start_ms.items()
        }
        self._now_ms = 0
        self._pending_publish: list[OhlcvEvent] = []
        self._sessions: dict[str, tuple[int, int]] = {}
        self._outages: list[tuple[int, int]] = []
        # Hot-path copies (one attribute load each instead of two).
        self._max_inversion = rails.max_spread_inversion
        self._epoch_rail_ms = rails.epoch_rail_ms
        self._max_future_ms = rails.max_future_ms
        self._min_price = rails.min_price
        self._max_price = rails.max_price
        self._max_volume = rails.max_volume
        self._update = self.builder.update
        self._applied = dict.fromkeys(start_ms, 0)
        #: Told `(symbol, next_minute_ms)` as the fast path moves on (the startup catch-up's
        #: progress); None: nobody listens.
        self.on_fetched: Callable[[str, int], None] | None = None

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
            and self._min_price <= bid <= self._max_price
            and self._min_price <= ask <= self._max_price
            and bid - ask <= self._max_inversion
            and self._epoch_rail_ms <= ts <= now_ms + self._max_future_ms
            and (tick.bid_volume is _UNSET or 0.0 <= tick.bid_volume <= self._max_volume)
            and (tick.ask_volume is _UNSET or 0.0 <= tick.ask_volume <= self._max_volume)
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
        bid_volume, ask_volume = tick.bid_volume, tick.ask_volume
        reason = check_tick(
            self._rails,
            tick.symbol,
            tick.bid,
            tick.ask,
            tick.ts_ms,
            now_ms,
            session is not None,
            None if isinstance(bid_volume, msgspec.UnsetType) else bid_volume,
            None if isinstance(ask_volume, msgspec.UnsetType) else ask_volume,
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
        if progress.advanced_ms is None:
            progress.advanced_ms = now_ms
        if ready_until <= progress.next_minute_ms or now_ms < progress.retry_at_ms:
            return False
        calendar = self._calendars[symbol]
        wrote = False
        for _ in range(MAX_ASKS_PER_ADVANCE):
            # Ask again from the first minute the broker has not provably passed.
            start = min(progress.pending_ms, progress.next_minute_ms)
            intervals = calendar.open_intervals(start, ready_until) if start < ready_until else []
            if not intervals:
                progress.next_minute_ms = max(progress.next_minute_ms, ready_until)
                progress.pending_ms = max(progress.pending_ms, ready_until)
                break
            ask_from, ask_to = _open_window(intervals, self._max_chunk_ms)
            chunk_limited = (
                _open_minutes(intervals, ask_from, ask_to) * MINUTE_MS >= self._max_chunk_ms
            )
            window = (ask_from, ask_to)
            if not chunk_limited and ask_to < ready_until and progress.last_ask == window:
                # The market closed after the pending minutes and nothing has opened since the
                # last ask: they are asked again once it opens (the next bar proves them).
                progress.next_minute_ms = max(progress.next_minute_ms, ready_until)
                break
            progress.last_ask = window
            if not await self._fetch(symbol, progress, ask_from, ask_to, now_ms):
                return wrote
            wrote = True
            progress.next_minute_ms = max(progress.next_minute_ms, ask_to)
            if self.on_fetched is not None:
                self.on_fetched(symbol, progress.next_minute_ms)
            if progress.pending_ms >= ask_to:
                continue
            if ask_to >= ready_until or not chunk_limited:
                break  # the tail near now (or before a closure): asked again later
            if progress.pending_ms <= ask_from:
                # A whole chunk of open time without a bar: it cannot be proven now. It stays
                # missing (repair's job); the fast path moves on.
                self._stats.unproven_minutes += _open_minutes(intervals, ask_from, ask_to)
                self._error(
                    now_ms,
                    "history.unproven",
                    f"{symbol} {iso_utc(ask_from)}..{iso_utc(ask_to)}: the broker's history "
                    "has no bar there; left missing for repair",
                )
                progress.pending_ms = ask_to
        floor = min(progress.pending_ms, progress.next_minute_ms)
        progress.ticked = {m for m in progress.ticked if m >= floor}
        progress.given_up = {m for m in progress.given_up if m >= floor}
        return wrote

    async def _fetch(
        self, symbol: str, progress: _SymbolProgress, from_ms: int, to_ms: int, now_ms: int
    ) -> bool:
        """Fetch, check, store one range; False when the call failed (retry later)."""
        self._stats.history_requests += 1
        try:
            answer = await self._history(symbol, from_ms, to_ms, FAST_PATH, Priority.FAST)
        except (TransientIOError, BadBrokerData) as exc:
            self._stats.history_failures += 1
            progress.failures += 1
            backoff = min(self._retry_cap_ms, self._retry_base_ms * 2 ** (progress.failures - 1))
            progress.retry_at_ms = now_ms + backoff
            self._error(now_ms, "history.failed", f"{symbol} {iso_utc(from_ms)}: {exc}")
            return False
        progress.failures = 0
        progress.retry_at_ms = 0
        # Minutes we saw ticks in, and minutes of a broker outage (we could not have seen
        # ticks then), are not proven quiet by an answer without a bar for them.
        seen = {m for m in progress.ticked if from_ms <= m < to_ms}
        seen |= self._outage_minutes(from_ms, to_ms)
        _, proof, _ = self._take_answer(symbol, answer, from_ms, to_ms, now_ms, seen)
        # A minute with ticks but no bar: asked alone again with backoff, whether the broker has
        # passed it (held back from quiet) or not yet (its history lags "now").
        tail = (m for m in seen if m >= proof.proven_until_ms)
        for minute in [*proof.doubtful, *tail]:
            if minute in seen and minute not in progress.given_up:
                tries, _ = progress.empty.get(minute, (0, 0))
                progress.empty.setdefault(minute, (tries, now_ms + self._retry_base_ms))
        if proof.proven_until_ms > progress.pending_ms:
            progress.pending_ms = proof.proven_until_ms
            progress.advanced_ms = now_ms
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
                answer = await self._history(
                    symbol, minute, minute + MINUTE_MS, FAST_PATH, Priority.FAST
                )
            except (TransientIOError, BadBrokerData) as exc:
                self._stats.history_failures += 1
                answer = HistoryAnswer([])
                self._error(now_ms, "history.failed", f"{symbol} {iso_utc(minute)}: {exc}")
            accepted, _ = self._check_history(symbol, answer, minute, minute + MINUTE_MS, now_ms)
            if accepted:
                del progress.empty[minute]
                self._store_finals(symbol, accepted)
                self.derived.touch(symbol, minute, minute + MINUTE_MS)
                wrote = True
            elif tries + 1 >= self._max_empty_retries:
                del progress.empty[minute]
                progress.given_up.add(minute)
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
    ) -> HistoryAnswer:
        """One broker history call, through the shared budget when there is one."""
        if self._budget is None:
            got = await self._raw_history(symbol, from_ms, to_ms)
        else:
            async with self._budget.slot(caller, priority):
                got = await self._raw_history(symbol, from_ms, to_ms)
        return got if isinstance(got, HistoryAnswer) else HistoryAnswer(list(got))

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
        safe_end = now_ms - self._safety_delay_ms
        safe_end -= safe_end % MINUTE_MS
        end = min(to_ms, safe_end)
        end -= end % MINUTE_MS
        chunks = _chunks(calendar.open_intervals(start, end), self._max_chunk_ms)
        # The command's buckets are its own: the live loop's advance never does its heavy work.
        builder = DerivedBuilder(self._store, self._calendars, self.timeframes)
        result = RangeResult(symbol=symbol, from_ms=start, to_ms=max(start, end))
        for index, (a, b) in enumerate(chunks):
            await self._fetch_chunk(symbol, a, b, caller, now_ms, safe_end, result, builder)
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

    async def _fetch_chunk(
        self,
        symbol: str,
        from_ms: int,
        to_ms: int,
        caller: str,
        now_ms: int,
        safe_end: int,
        result: RangeResult,
        builder: DerivedBuilder,
    ) -> None:
        """One command chunk: asked again from where an answer ended early; when an answer has
        nothing past the last proven minute, a probe looks past the chunk for a later bar.
        What stays unproven is reported in `result.pending` (missing, never quiet)."""
        cursor, probing = from_ms, False
        progress = self._progress.get(symbol)
        for _ in range(MAX_ASKS_PER_CHUNK):
            ask_to = self._probe_end(symbol, to_ms, safe_end) if probing else to_ms
            if ask_to <= cursor:
                break
            try:
                answer = await self._history(symbol, cursor, ask_to, caller, Priority.HEAVY)
            except (TransientIOError, BadBrokerData) as exc:
                self._stats.history_failures += 1
                result.failed_chunks.append((cursor, to_ms, str(exc)[:200]))
                self._error(now_ms, "history.failed", f"{caller} {symbol} {iso_utc(cursor)}: {exc}")
                return
            self._stats.history_requests += 1
            seen = set() if progress is None else set(progress.ticked)
            refused_before = sum(self._stats.candles_refused.values())
            accepted, proof, fresh = self._take_answer(
                symbol, answer, cursor, ask_to, now_ms, seen, builder
            )
            result.bars_fetched += len(accepted)
            result.new_bars += sum(1 for e in fresh if e.rev == 0)
            result.revisions += sum(1 for e in fresh if e.rev > 0)
            result.refused += sum(self._stats.candles_refused.values()) - refused_before
            if proof.proven_until_ms >= to_ms:
                return
            if proof.proven_until_ms > cursor:
                cursor, probing = proof.proven_until_ms, False  # ended early: ask from there
            elif not probing:
                probing = True  # nothing past `cursor`: look past the chunk for a later bar
            else:
                break
        result.pending.append((cursor, to_ms))

    def _probe_end(self, symbol: str, to_ms: int, safe_end: int) -> int:
        """The end of a probe past `to_ms`: PROBE_MS from the next open minute, before
        `safe_end`."""
        calendar = self._calendars[symbol]
        first_open = to_ms if calendar.is_open(to_ms) else calendar.next_open(to_ms)
        if first_open is None:
            return min(to_ms, safe_end)
        return max(to_ms, min(safe_end, first_open + PROBE_MS))

    def _take_answer(
        self,
        symbol: str,
        answer: HistoryAnswer,
        from_ms: int,
        to_ms: int,
        now_ms: int,
        seen: set[int],
        builder: DerivedBuilder | None = None,
    ) -> tuple[list[OhlcvEvent], AnswerProof, list[OhlcvEvent]]:
        """Check, store and prove one answer to `[from_ms, to_ms)`: the good bars are stored,
        the proven-quiet ranges recorded, the buckets above them marked for derivation (in
        `builder`, a command's own, else the live loop's); (accepted, proof, the new bars and
        revisions stored)."""
        accepted, refused = self._check_history(symbol, answer, from_ms, to_ms, now_ms)
        if None in refused:
            # A candle whose minute could not be read: no empty minute of this answer is proven.
            proof = AnswerProof(quiet=[], proven_until_ms=from_ms, doubtful=[])
        else:
            proof = prove_quiet(
                from_ms,
                to_ms,
                [bar.open_ms for bar in accepted],
                doubtful=seen
                | {m for m in refused if m is not None}
                | set(answer.unfinished)
                | _minutes_in(answer.unproven, from_ms, to_ms),
                passed_until_ms=answer.passed_until_ms,
            )
        fresh = self._store_finals(symbol, accepted)
        for a, b in proof.quiet:
            self._store.mark_fetched(symbol, a, b)
        (self.derived if builder is None else builder).touch(symbol, from_ms, to_ms)
        return accepted, proof, fresh

    def _check_history(
        self, symbol: str, answer: HistoryAnswer, from_ms: int, to_ms: int, now_ms: int
    ) -> tuple[list[OhlcvEvent], set[int | None]]:
        """The answer's good bars, and the minutes of refused candles (None: unreadable)."""
        calendar = self._calendars[symbol]
        refused: set[int | None] = set()
        for candle in answer.rejected:
            refused.add(candle.open_ms)
            self._refuse(now_ms, symbol, candle.open_ms, candle.reason, candle.detail)
        accepted = []
        for bar in answer.bars:
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
                refused.add(bar.open_ms - bar.open_ms % MINUTE_MS)
                self._refuse(now_ms, symbol, bar.open_ms, "bar_contract", "; ".join(problems))
                continue
            accepted.append(bar)
        return accepted, refused

    def _refuse(
        self, now_ms: int, symbol: str, open_ms: int | None, reason: str, detail: str
    ) -> None:
        self._stats.history_bars_refused += 1
        self._stats.candles_refused[reason] += 1
        where = "unreadable time" if open_ms is None else iso_utc(open_ms)
        self._error(now_ms, "history.bad_bar", f"{symbol} {where}: {reason}: {detail}")

    def final_lag_ms(self, symbol: str, now_ms: int) -> int:
        """Open market time between the symbol's proven frontier (every minute before it is
        final, quiet or given up as missing) and the last minute that could be fetched."""
        progress = self._progress[symbol]
        ready_until = now_ms - self._safety_delay_ms
        ready_until -= ready_until % MINUTE_MS
        if progress.pending_ms >= ready_until:
            return 0
        intervals = self._calendars[symbol].open_intervals(progress.pending_ms, ready_until)
        return sum(b - a for a, b in intervals)

    def stalled(self, now_ms: int) -> dict[str, int]:
        """Symbols whose finals stopped advancing: more than `stall_after_ms` of open market
        time behind, and no progress for that long (a catch-up that is moving is not a stall),
        with their lag in ms."""
        out = {}
        for symbol, progress in self._progress.items():
            lag = self.final_lag_ms(symbol, now_ms)
            since = now_ms - (now_ms if progress.advanced_ms is None else progress.advanced_ms)
            if lag > self._stall_after_ms and since > self._stall_after_ms:
                out[symbol] = lag
        return out

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


_UNSET = msgspec.UNSET


def _chunks(intervals: Sequence[tuple[int, int]], size_ms: int) -> list[tuple[int, int]]:
    """Open intervals cut into pieces of at most `size_ms`."""
    out = []
    for start, end in intervals:
        cursor = start
        while cursor < end:
            out.append((cursor, min(end, cursor + size_ms)))
            cursor += size_ms
    return out


def _open_window(intervals: Sequence[tuple[int, int]], size_ms: int) -> tuple[int, int]:
    """From the first open minute, the range holding at most `size_ms` of open time."""
    budget = size_ms
    end = intervals[0][0]
    for start, stop in intervals:
        take = min(stop - start, budget)
        end = start + take
        budget -= take
        if budget <= 0:
            break
    return intervals[0][0], end


def _minutes_in(ranges: Sequence[tuple[int, int]], from_ms: int, to_ms: int) -> set[int]:
    """The minutes of `ranges` inside `[from_ms, to_ms)`."""
    minutes: set[int] = set()
    for start, end in ranges:
        lo, hi = max(start, from_ms), min(end, to_ms)
        minutes.update(range(lo - lo % MINUTE_MS, hi, MINUTE_MS))
    return minutes


def _open_minutes(intervals: Sequence[tuple[int, int]], from_ms: int, to_ms: int) -> int:
    """Open minutes of `intervals` inside `[from_ms, to_ms)`."""
    total = sum(max(0, min(b, to_ms) - max(a, from_ms)) for a, b in intervals)
    return total // MINUTE_MS
