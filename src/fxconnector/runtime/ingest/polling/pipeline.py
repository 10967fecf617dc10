"""The pipeline: ticks → previews → close detection → final 1m → SSOT → derived → sink.

Rules (DESIGN §5):
- A tick is validated (rails + calendar) and applied to the live builder; rejects and late ticks
  are counted by reason, never raised.
- Close detection (the fast path, fast_path.py: when each symbol is asked, following the
  history plan): once a minute has ended plus the safety delay, its 1m bar is fetched from the
  broker's history. Commands' range fetches are range_fetch.py. History bars are checked
  against the contract (history_check.py); a bad
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
- Finals are appended to the store, made durable (flush), then handed to the sink: per symbol,
  as soon as its answer is stored (durable.py). Flushes are group-committed: callers that
  arrive while one runs share the next, and nothing is published before a flush that started
  after its append has ended. Derived bars follow from the final 1m (DerivedBuilder). A
  repeated final is a no-op; a different one is a revision and is republished.
- 1m finals come before derivation: `advance` lets the sink acknowledge the finals of the
  fast path (`settle`, when given) before a derive slice takes the event loop.
- `advance(now)` is the one entry point for time: the live loop calls it at `next_due_ms` (the
  minute boundary plus the safety delay, or earlier for a retry or a catch-up), a replay calls
  it with tick time.
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
from fxconnector.core.history_plan import HistoryPlan
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.status import ErrorEntry
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import MINUTE_MS, Timeframe, iso_utc
from fxconnector.core.validation.ticks import TickRails, check_tick
from fxconnector.runtime.governance.rails import HistoryBudget, Priority
from fxconnector.runtime.ingest.broker.port import HistoryAnswer
from fxconnector.runtime.ingest.polling.derived_builder import DerivedBuilder
from fxconnector.runtime.ingest.polling.durable import DurablePublisher, Offload
from fxconnector.runtime.ingest.polling.fast_path import FAST_PATH as FAST_PATH
from fxconnector.runtime.ingest.polling.fast_path import FastPath, minutes_in
from fxconnector.runtime.ingest.polling.history_check import check_answer
from fxconnector.runtime.ingest.polling.range_fetch import RangeFetch
from fxconnector.runtime.ingest.polling.range_fetch import RangeResult as RangeResult
from fxconnector.runtime.publish.sink import EventSink
from fxconnector.runtime.store.port import FinalStore

#: A broker's `history_1m`; a plain list of bars is an answer with no refused candle and no
#: completeness signal.
HistoryFetch = Callable[[str, int, int], Awaitable[HistoryAnswer | Sequence[OhlcvEvent]]]
#: Waits until the sink has acknowledged the finals handed to it (RedisSurface.settle: Redis
#: acked them, or it is down and nothing is waited for).
Settle = Callable[[], Awaitable[None]]
#: Work of one derive slice (a few ms) before the event loop gets its turn back, in minutes of
#: 1m read (see derived_builder.BUCKET_COST_MINUTES): one 1d bucket, or two 5m buckets.
DERIVE_SLICE_MINUTES = 250


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
        plan: HistoryPlan | None = None,
        settle: Settle | None = None,
    ) -> None:
        self._raw_history = history
        self._settle = settle
        self._budget = budget
        self._store = store
        self._calendars = calendars
        self._rails = rails
        self._sink = sink
        self._max_chunk_ms = max_chunk_minutes * MINUTE_MS
        self._flush_each_advance = flush_each_advance
        self._stall_after_ms = stall_after_ms
        self.timeframes = tuple(timeframes)
        self.builder = LiveBuilder(calendars, timeframes, spec)
        self.derived = DerivedBuilder(store, calendars, timeframes)
        self._stats = PipelineStats()
        self.plan = plan
        self.fast = FastPath(
            self,
            calendars,
            start_ms,
            safety_delay_ms=safety_delay_ms,
            max_chunk_ms=self._max_chunk_ms,
            max_empty_retries=max_empty_retries,
            retry_base_ms=retry_base_ms,
            retry_cap_ms=retry_cap_ms,
            plan=plan,
        )
        self._progress = self.fast.progress
        self._ranges = RangeFetch(
            self,
            calendars,
            store,
            self.timeframes,
            safety_delay_ms=safety_delay_ms,
            max_chunk_ms=self._max_chunk_ms,
            offload=offload,
        )
        self._now_ms = 0
        self._sessions: dict[str, tuple[int, int]] = {}
        self._durable = DurablePublisher(store, offload, self._publish, self.error)
        # Hot-path copies (one attribute load each instead of two).
        self._max_inversion = rails.max_spread_inversion
        self._epoch_rail_ms = rails.epoch_rail_ms
        self._max_future_ms = rails.max_future_ms
        self._min_price = rails.min_price
        self._max_price = rails.max_price
        self._max_volume = rails.max_volume
        self._update = self.builder.update
        self._applied = dict.fromkeys(start_ms, 0)

    @property
    def on_fetched(self) -> Callable[[str, int], None] | None:
        """Told `(symbol, next_minute_ms)` as the fast path moves on (the startup catch-up's
        progress); None: nobody listens."""
        return self.fast.on_fetched

    @on_fetched.setter
    def on_fetched(self, listener: Callable[[str, int], None] | None) -> None:
        self.fast.on_fetched = listener

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
        """Move to `now_ms`: close previews, fetch ended minutes (each symbol's finals durable
        and published as soon as its answer is stored), derive, publish."""
        self._now_ms = max(self._now_ms, now_ms)
        self.close_previews(now_ms)
        await self.fast.run(now_ms, self._commit)
        if self._settle is not None:
            # Derivation holds the event loop for a slice (ms): the 1m finals just handed over
            # reach Redis first, so the publisher's round trip never queues behind it.
            await self._settle()
        derived = self.derived.run(now_ms, max_minutes=DERIVE_SLICE_MINUTES)
        more = self.derived.more_ready
        await self.publish_durable(derived, self._flush_each_advance)
        if more:
            await self.derive_ready(now_ms, flush=self._flush_each_advance)

    async def _commit(self, wrote: bool) -> None:
        """One symbol's fast-path writes: durable (a shared flush), then published."""
        await self.publish_durable((), self._flush_each_advance, coverage=wrote)

    def next_due_ms(self, now_ms: int) -> int:
        """When `advance` has work next: now while a catch-up or a derivation has more, else
        the next minute boundary plus the safety delay or an earlier retry."""
        return now_ms if self.derived.more_ready else self.fast.next_due_ms(now_ms)

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
            await self.publish_durable(derived, flush)
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

    def note_outage(self, from_ms: int, to_ms: int) -> None:
        """The broker stream was down (or stale) over `[from_ms, to_ms)`: no minute in it is
        quiet just because history has no bar; such minutes are retried, then left missing
        for tail_guard."""
        self.fast.note_outage(from_ms, to_ms)

    async def history(
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
        derive what it touched and publish new bars and revisions (range_fetch)."""
        return await self._ranges.fetch(
            symbol, from_ms, to_ms, caller=caller, now_ms=now_ms, progress=progress
        )

    def take_answer(
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
        accepted, refused = self.check_history(symbol, answer, from_ms, to_ms, now_ms)
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
                | minutes_in(answer.unproven, from_ms, to_ms),
                passed_until_ms=answer.passed_until_ms,
            )
        fresh = self.store_finals(symbol, accepted)
        for a, b in proof.quiet:
            self._store.mark_fetched(symbol, a, b)
        (self.derived if builder is None else builder).touch(symbol, from_ms, to_ms)
        return accepted, proof, fresh

    def check_history(
        self, symbol: str, answer: HistoryAnswer, from_ms: int, to_ms: int, now_ms: int
    ) -> tuple[list[OhlcvEvent], set[int | None]]:
        """The answer's good bars, and the minutes of refused candles (None: unreadable)."""
        accepted, refused, refusals = check_answer(
            self._calendars[symbol], symbol, answer, from_ms, to_ms
        )
        for refusal in refusals:
            self._refuse(now_ms, symbol, refusal.open_ms, refusal.reason, refusal.detail)
        return accepted, refused

    def _refuse(
        self, now_ms: int, symbol: str, open_ms: int | None, reason: str, detail: str
    ) -> None:
        self._stats.history_bars_refused += 1
        self._stats.candles_refused[reason] += 1
        where = "unreadable time" if open_ms is None else iso_utc(open_ms)
        self.error(now_ms, "history.bad_bar", f"{symbol} {where}: {reason}: {detail}")

    def final_lag_ms(self, symbol: str, now_ms: int) -> int:
        """Open market time between the symbol's proven frontier and the last minute that
        could be fetched."""
        return self.fast.final_lag_ms(symbol, now_ms)

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

    def store_finals(self, symbol: str, bars: Sequence[OhlcvEvent]) -> list[OhlcvEvent]:
        """Append `bars`; the new bars and revisions (queued for publishing) are returned."""
        return self._durable.store_finals(symbol, bars, self._now_ms)

    async def publish_durable(
        self, derived: Sequence[OhlcvEvent], flush: bool, *, coverage: bool = False
    ) -> None:
        """Flush (off the event loop) then publish what is pending now and `derived` (durable)."""
        await self._durable.publish_durable(derived, flush, coverage=coverage)

    def _publish(self, events: Sequence[OhlcvEvent]) -> None:
        if not events:
            return
        for (revised, tf), count in collections.Counter(
            (bool(e.rev), e.tf) for e in events
        ).items():
            (self._stats.revisions if revised else self._stats.finals)[tf.value] += count
        self._sink.finals(events)

    def error(self, now_ms: int, code: str, message: str) -> None:
        self._stats.errors.append(ErrorEntry(ts=now_ms, code=code, message=message[:500]))


_UNSET = msgspec.UNSET
