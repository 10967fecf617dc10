"""How long a heavy command can delay the 1m fast path: event-loop lateness during a backfill.

A 30-day sim backfill runs through `Pipeline.fetch_range` (in slices) while a ticker that wants
to run every 100 ms, as the connector's clock loop does, records how late it wakes. The worst
lateness bounds how far past its safety delay a final 1m can be pushed. The baseline is the
same ticker with nothing else running.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
from pathlib import Path

from bench.runner import Row
from fxconnector.config.calendars import load_calendar
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.time_geom import DAY_MS, MINUTE_MS, Timeframe, to_ms
from fxconnector.core.validation.ticks import TickRails
from fxconnector.runtime.clock import SystemClock
from fxconnector.runtime.governance.rails import BudgetConfig, HistoryBudget
from fxconnector.runtime.ingest.broker.sim.broker import SimBroker
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.publish.sink import CountingSink
from fxconnector.runtime.store.ssot_jsonl import JsonlStore

TFS = (Timeframe.M1, Timeframe.M5, Timeframe.M15, Timeframe.H1, Timeframe.H4, Timeframe.D1)


async def _lateness(work: asyncio.Task[object] | None, seconds: float) -> list[float]:
    late: list[float] = []
    period = 0.1
    deadline = time.monotonic() + seconds
    while (work is not None and not work.done()) or (work is None and time.monotonic() < deadline):
        due = time.monotonic() + period
        await asyncio.sleep(period)
        late.append(max(0.0, time.monotonic() - due))
    return late


def run() -> list[Row]:
    now_ms = to_ms(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    calendar = load_calendar("always_open", now_ms=now_ms).default
    calendars = {"EURUSD": calendar}

    async def scenario() -> tuple[list[float], list[float], int, float]:
        clock = SystemClock()
        broker = SimBroker(TickGenerator(5, calendars, 60), ["EURUSD"], clock, BarSpec(), calendars)
        with tempfile.TemporaryDirectory() as tmp:
            store = JsonlStore(Path(tmp))
            store.open()
            pipeline = Pipeline(
                history=broker.history_1m,
                store=store,
                calendars=calendars,
                timeframes=TFS,
                spec=BarSpec(),
                rails=TickRails(frozenset({"EURUSD"})),
                sink=CountingSink(),
                start_ms={"EURUSD": clock.now_ms()},
                max_chunk_minutes=240,
                budget=HistoryBudget(
                    clock,
                    BudgetConfig(requests_per_min=100_000, burst=100_000, max_chunk_minutes=240),
                ),
            )
            idle = await _lateness(None, 2.0)
            now = clock.now_ms()
            started = time.monotonic()
            work = asyncio.create_task(
                pipeline.fetch_range(
                    "EURUSD", now - 30 * DAY_MS, now - MINUTE_MS, caller="backfill", now_ms=now
                )
            )
            busy = await _lateness(work, 0)
            result = await work
            took = time.monotonic() - started
            store.close()
            return idle, busy, result.bars_fetched, took

    idle, busy, bars, took = asyncio.run(scenario())

    def p99(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    return [
        Row(
            f"fast-path wake lateness during a 30-day backfill ({bars} bars in {took:.1f} s): "
            f"p99 {p99(busy) * 1000:.0f} ms, max {max(busy) * 1000:.0f} ms "
            f"(idle p99 {p99(idle) * 1000:.1f} ms)",
            bars,
            "bars",
            took,
            "idle loop",
            took,
        )
    ]
