"""Running the whole pipeline over recorded ticks, with the ticks' own time as the clock.

Rules (issue: replay): the replay's clock is tick time; at the end of the input it moves on to
`to_ms` (or the end of the last tick's trading day), so every bucket inside the range is final
when the run ends. Ticks the rails refuse are counted by reason and do not reach the history the
replay broker answers with, nor the replay's range: without `--from`/`--to` the range spans the
accepted ticks' trading days only. Progress goes to a callback; the store is flushed
(acknowledged) at least every `ack_interval_s` of wall time and at the end, and each flush is
reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fxconnector.core.buckets import bucket_open
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.errors import ConfigError
from fxconnector.core.model.tick import TickBatch
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.core.validation.ticks import TickRails, check_batch, count_reasons
from fxconnector.runtime.ingest.broker.replay.broker import ReplayBroker
from fxconnector.runtime.ingest.polling.pipeline import Pipeline, PipelineStats
from fxconnector.runtime.publish.sink import CountingSink
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
) -> ReplaySummary:
    """Replay `batch` (already range-filtered) through the pipeline into `store`.

    `now_ms` is the wall clock for the future-timestamp rail; `rails` default to the built-in
    limits for `batch.symbol`.
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
    good = batch.select(codes < 0)
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
    broker = ReplayBroker(good, spec, calendar, speed)
    sink = CountingSink()
    pipeline = Pipeline(
        history=broker.history_1m,
        store=store,
        calendars={symbol: calendar},
        timeframes=timeframes,
        spec=spec,
        rails=rails,
        sink=sink,
        start_ms={symbol: start},
        safety_delay_ms=0,
        flush_each_advance=False,
    )
    # As fast as possible, time is only a clock: closing an hour of minutes in one advance is
    # the same work as sixty one-minute advances, with one history call instead of sixty.
    step_ms = MINUTE_MS if speed > 0 else 60 * MINUTE_MS
    last_ack = time.monotonic()
    done = 0
    total = len(good)
    current_minute = -1
    next_advance = 0
    await broker.connect()
    async for tick in broker.ticks():
        minute = tick.ts_ms - tick.ts_ms % MINUTE_MS
        if minute > current_minute:
            current_minute = minute
            if minute >= next_advance:
                await pipeline.advance(minute)
                next_advance = minute + step_ms
            if time.monotonic() - last_ack >= ack_interval_s:
                pipeline.flush()
                last_ack = time.monotonic()
                if ack is not None:
                    ack(pipeline.progress_ms(symbol))
                if progress is not None:
                    progress(done, total)
        pipeline.on_tick(tick, tick.ts_ms)
        done += 1
    await pipeline.advance(max(end, current_minute + MINUTE_MS))
    await broker.close()
    pipeline.flush()
    if ack is not None:
        ack(pipeline.progress_ms(symbol))
    if progress is not None:
        progress(total, total)
    return _summary(pipeline.stats, pipeline.late_ticks, batch, rejected, start, end, started)


def _summary(
    stats: PipelineStats,
    late: int,
    batch: TickBatch,
    rejected: dict[str, int],
    start: int,
    end: int,
    started: float,
) -> ReplaySummary:
    return ReplaySummary(
        ticks_total=len(batch),
        ticks_applied=stats.ticks,
        rejected={**rejected, **{k: v for k, v in stats.rejected.items()}},
        late_ticks=late,
        finals=dict(stats.finals),
        revisions=dict(stats.revisions),
        from_ms=start,
        to_ms=end,
        wall_s=time.monotonic() - started,
        errors=[f"{e.code}: {e.message}" for e in stats.errors],
    )
