"""Running the whole pipeline over recorded ticks, with the ticks' own time as the clock.

Rules (issue: replay): the replay's clock is tick time; at the end of the input it moves on to
`to_ms` (or the end of the last tick's trading day), so every bucket inside the range is final
when the run ends. Ticks the rails refuse are counted by reason and do not reach the history the
replay broker answers with, nor the replay's range: without `--from`/`--to` the range spans the
accepted ticks' trading days only. Progress goes to a callback; the store is flushed
(acknowledged) at least every `ack_interval_s` of wall time and at the end, and each flush is
reported.

Two drives, one output: paced (a speed factor) plays every tick through the live path, with
previews, as a live feed would. As fast as possible, nothing consumes previews: the ticks are
never materialised one by one; the 1m bars are built from the tick columns at once (the replay
broker's history, DESIGN §10) and the pipeline is advanced at the same tick-time moments the
tick-by-tick drive would advance it (each new minute once an hour of tick time has passed), so
the store, its coverage lines and the finals published are the same, byte for byte (a test on
real data holds the two drives equal). `per_tick=True` forces the tick-by-tick drive.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fxconnector.core.buckets import bucket_open
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.errors import ConfigError
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.tick import TickBatch
from fxconnector.core.time_geom import MINUTE_MS, Timeframe, floor_array
from fxconnector.core.validation.ticks import TickRails, check_batch, count_reasons
from fxconnector.runtime.ingest import replay_bulk
from fxconnector.runtime.ingest.broker.replay.broker import ReplayBroker
from fxconnector.runtime.ingest.polling.pipeline import Pipeline, PipelineStats
from fxconnector.runtime.publish.sink import CountingSink, EventSink
from fxconnector.runtime.store.port import FinalStore

Progress = Callable[[int, int], None]  # (ticks done, ticks total)
Ack = Callable[[int], None]  # stream time through which everything is durable


@dataclass(slots=True)
class ReplaySummary:
    ticks_total: int
    ticks_applied: int
    rejected: dict[str, int]
    late_ticks: int
    finals: dict[str, int]
    revisions: dict[str, int]
    from_ms: int
    to_ms: int
    wall_s: float
    errors: list[str] = field(default_factory=list)


async def run_replay(
    batch: TickBatch,
    *,
    calendar: TradingCalendar,
    timeframes: tuple[Timeframe, ...],
    spec: BarSpec,
    store: FinalStore,
    from_ms: int | None = None,
    to_ms: int | None = None,
    speed: float = 0.0,
    progress: Progress | None = None,
    ack: Ack | None = None,
    ack_interval_s: float = 1.0,
    now_ms: int | None = None,
    rails: TickRails | None = None,
    sink: EventSink | None = None,
    per_tick: bool = False,
) -> ReplaySummary:
    """Replay `batch` (already range-filtered) through the pipeline into `store`.

    `now_ms` is the wall clock for the future-timestamp rail; `rails` default to the built-in
    limits for `batch.symbol`; `sink` receives what the pipeline publishes (by default it is
    only counted); `per_tick` plays every tick through the live path even at full speed.
    """
    started = time.monotonic()
    symbol = batch.symbol
    rails = rails or TickRails(symbols=frozenset({symbol}))
    # A recorded tick is never from the future of the wall clock; without a `now` (tests of a
    # synthetic future) only the tick's own time bounds it.
    codes = check_batch(
        rails, batch, batch.ts_ms if now_ms is None else now_ms, calendar.is_open_array
    )
    rejected = count_reasons(codes)
    good = batch if not rejected else batch.select(codes < 0)
    if not len(good) and (from_ms is None or to_ms is None):
        raise ConfigError(
            f"{symbol}: none of {len(batch)} ticks passed the tick rails "
            f"(rejected: {', '.join(f'{k}={v}' for k, v in sorted(rejected.items()))}); "
            "nothing to replay"
        )
    # The range comes from accepted ticks only: one row stamped 1970 or 2099 must not stretch
    # the replay over decades of empty minutes.
    first_ts = int(good.ts_ms.min()) if len(good) else 0
    last_ts = int(good.ts_ms.max()) if len(good) else 0
    start = from_ms if from_ms is not None else bucket_open(first_ts, Timeframe.D1, calendar)
    end = to_ms if to_ms is not None else bucket_open(last_ts, Timeframe.D1, calendar) + 86_400_000
    published = sink if sink is not None else CountingSink()
    bulk = (
        None if speed > 0 or per_tick else replay_bulk.plan(good, store, calendar, spec, start, end)
    )
    if bulk is not None:
        done = replay_bulk.run_bulk(
            bulk,
            symbol,
            calendar=calendar,
            timeframes=timeframes,
            store=store,
            sink=published,
            progress=progress,
            ack=ack,
            ack_interval_s=ack_interval_s,
        )
        stats = PipelineStats()
        stats.finals.update(done.finals)
        applied, late = len(good) - bulk.late_ticks, bulk.late_ticks
        summary = _summary(stats, applied, late, batch, rejected, start, end, started)
        _count(summary, done.derived)
        return summary
    broker = ReplayBroker(good, spec, calendar, speed)
    pipeline = Pipeline(
        history=broker.history_1m,
        store=store,
        calendars={symbol: calendar},
        timeframes=timeframes,
        spec=spec,
        rails=rails,
        sink=published,
        start_ms={symbol: start},
        safety_delay_ms=0,
        flush_each_advance=False,
    )
    # As fast as possible, time is only a clock: closing an hour of minutes in one advance is
    # the same work as sixty one-minute advances, with one history call instead of sixty.
    step_ms = MINUTE_MS if speed > 0 else 60 * MINUTE_MS
    drive = _TickDrive if speed > 0 or per_tick else _MinuteDrive
    runner = drive(pipeline, broker, good, step_ms, progress, ack, ack_interval_s)
    derived: list[OhlcvEvent] = []
    await broker.connect()
    if drive is _MinuteDrive:
        pipeline.derived.hold()
    last_minute = await runner.run()
    final_ms = max(end, last_minute + MINUTE_MS)
    await pipeline.advance(final_ms)
    await broker.close()
    if drive is _MinuteDrive:
        # Every bucket at once (one read of the 1m per timeframe), after the 1m are all final.
        pipeline.derived.release()
        derived = pipeline.derived.run(final_ms)
    pipeline.flush()
    if derived:
        published.finals(derived)  # durable since the flush above
    if ack is not None:
        ack(pipeline.progress_ms(symbol))
    if progress is not None:
        progress(len(good), len(good))
    applied, late = runner.applied()
    summary = _summary(pipeline.stats, applied, late, batch, rejected, start, end, started)
    _count(summary, derived)
    return summary


def _count(summary: ReplaySummary, derived: list[OhlcvEvent]) -> None:
    for (revised, tf), count in Counter((bool(e.rev), e.tf) for e in derived).items():
        counts = summary.revisions if revised else summary.finals
        counts[tf.value] = counts.get(tf.value, 0) + count


class _Drive(ABC):
    """Moves the pipeline through the ticks' time: an advance at the first tick of each new
    minute once `step_ms` has passed since the last one, and a flush every `ack_interval_s`."""

    def __init__(
        self,
        pipeline: Pipeline,
        broker: ReplayBroker,
        good: TickBatch,
        step_ms: int,
        progress: Progress | None,
        ack: Ack | None,
        ack_interval_s: float,
    ) -> None:
        self.pipeline = pipeline
        self.broker = broker
        self.good = good
        self._step_ms = step_ms
        self._progress = progress
        self._ack = ack
        self._ack_interval_s = ack_interval_s
        self._last_ack = time.monotonic()
        self._next_advance = 0

    async def new_minute(self, minute: int, done: int) -> None:
        """A tick opened `minute`, later than any before it; `done` ticks came before it."""
        if minute >= self._next_advance:
            await self.pipeline.advance(minute)
            self._next_advance = minute + self._step_ms
        if time.monotonic() - self._last_ack >= self._ack_interval_s:
            self.pipeline.flush()
            self._last_ack = time.monotonic()
            if self._ack is not None:
                self._ack(self.pipeline.progress_ms(self.good.symbol))
            if self._progress is not None:
                self._progress(done, len(self.good))

    @abstractmethod
    async def run(self) -> int:
        """Drive through every tick; return the latest minute seen (-1: none)."""

    @abstractmethod
    def applied(self) -> tuple[int, int]:
        """(ticks applied, late ticks dropped)."""


class _TickDrive(_Drive):
    """Every tick through the live path (validation, previews), paced when a speed is set."""

    async def run(self) -> int:
        current_minute = -1
        done = 0
        on_tick = self.pipeline.on_tick
        async for tick in self.broker.ticks():
            minute = tick.ts_ms - tick.ts_ms % MINUTE_MS
            if minute > current_minute:
                current_minute = minute
                await self.new_minute(minute, done)
            on_tick(tick, tick.ts_ms)
            done += 1
        return current_minute

    def applied(self) -> tuple[int, int]:
        return self.pipeline.stats.ticks, self.pipeline.late_ticks


class _MinuteDrive(_Drive):
    """Only the moments the tick drive would act at: the first tick of each minute later than
    every tick before it. The ticks themselves are already in the broker's history (built from
    the same columns, through the same late-tick rail); nothing consumes their previews."""

    async def run(self) -> int:
        ts = self.good.ts_ms
        if not ts.size:
            return -1
        # The minutes exactly as the broker's history (vector.ticks_to_1m) floors the same ticks.
        latest = np.maximum.accumulate(floor_array(ts, MINUTE_MS))
        firsts = np.flatnonzero(np.concatenate(([True], latest[1:] > latest[:-1])))
        minutes = latest[firsts].tolist()
        starts = firsts.tolist()
        # Between two advances the tick drive does nothing but look at the wall clock, and
        # there is nothing new to flush: only the minutes that advance are visited (the first
        # one at or after each `_next_advance`), one search each.
        at = 0
        while at < len(minutes):
            await self.new_minute(minutes[at], starts[at])
            at = max(at + 1, bisect_left(minutes, self._next_advance))
        return int(latest[-1])

    def applied(self) -> tuple[int, int]:
        late = self.broker.late_ticks
        return len(self.good) - late, late


def _summary(
    stats: PipelineStats,
    applied: int,
    late: int,
    batch: TickBatch,
    rejected: dict[str, int],
    start: int,
    end: int,
    started: float,
) -> ReplaySummary:
    return ReplaySummary(
        ticks_total=len(batch),
        ticks_applied=applied,
        rejected={**rejected, **{k: v for k, v in stats.rejected.items()}},
        late_ticks=late,
        finals=dict(stats.finals),
        revisions=dict(stats.revisions),
        from_ms=start,
        to_ms=end,
        wall_s=time.monotonic() - started,
        errors=[f"{e.code}: {e.message}" for e in stats.errors],
    )
