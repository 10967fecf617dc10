"""The scheduled repair on an injected clock: a minute the broker's history lacks stays missing
(its 1h, 4h and 1d wait), the history then has it, and the next scheduled run fetches it, derives
the buckets above it and publishes them to a real Redis; status and metrics say what it did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import msgspec
import pytest
from jsonschema import Draft202012Validator

from fxconnector.config.secrets import Secrets
from fxconnector.core.builders.derive import derive
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.contracts import ContractName, load_schema
from fxconnector.core.errors import CommandError, TransientIOError
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.status import (
    BrokerState,
    RepairRun,
    RepairState,
    SsotState,
    StatusV2,
    SurfaceState,
)
from fxconnector.core.time_geom import DAY_MS, HOUR_MS, MINUTE_MS, Timeframe
from fxconnector.core.validation.ticks import TickRails
from fxconnector.runtime.clock import ManualClock, SystemClock
from fxconnector.runtime.governance.metrics import Metrics, PipelineCounts
from fxconnector.runtime.governance.rails import HistoryBudget
from fxconnector.runtime.ingest.broker.sim.broker import SimBroker
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator
from fxconnector.runtime.ingest.commands.auto_repair import RepairScheduler
from fxconnector.runtime.ingest.commands.handlers import CommandContext, RepairCaps
from fxconnector.runtime.ingest.commands.runner import CommandRunner
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.publish.redis_connect import connect_redis
from fxconnector.runtime.publish.redis_surface import RedisSurface
from fxconnector.runtime.status.builder import Facts, StatusBuilder, encode_bounded
from fxconnector.runtime.store.cache_tail import TailCache
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.redis_server import RedisServer
from tests.runtime.publish.test_redis_surface import KEYS, read_snapshot, settled

pytestmark = pytest.mark.redis

T0: Final = 1_549_238_400_000  # Mon 2019-02-04T00:00:00Z
LOST: Final = T0 + 10 * HOUR_MS + 17 * MINUTE_MS  # the minute the broker's history lacks at first
TFS: Final = (Timeframe.M1, Timeframe.M5, Timeframe.H1, Timeframe.H4, Timeframe.D1)
ABOVE: Final = {  # the buckets above LOST (always_open: the trading day starts 00:00 UTC)
    Timeframe.M5: T0 + 10 * HOUR_MS + 15 * MINUTE_MS,
    Timeframe.H1: T0 + 10 * HOUR_MS,
    Timeframe.H4: T0 + 8 * HOUR_MS,
    Timeframe.D1: T0,
}
WAIT_S: Final = 60.0


class Lacking:
    """The sim's history without the minutes in `lacking` (the broker has not got them yet);
    with `failing`, a request over such a minute fails instead."""

    def __init__(self, broker: SimBroker, lacking: set[int]) -> None:
        self.broker = broker
        self.lacking = lacking
        self.failing = False

    async def __call__(self, symbol: str, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
        if self.failing and any(from_ms <= m < to_ms for m in self.lacking):
            raise TransientIOError("history: service unavailable (503)")
        bars = (await self.broker.history_1m(symbol, from_ms, to_ms)).bars
        return [b for b in bars if b.open_ms not in self.lacking]


def status_of(scheduler: RepairScheduler, now: int, calendar: CalendarProfile) -> StatusV2:
    """The status a connector would publish, checked against the status_v2 JSON Schema."""
    facts = Facts(
        now_ms=now,
        broker_kind="sim",
        broker_state=BrokerState.CONNECTED,
        last_tick_ts_ms=None,
        reconnects=0,
        surface_state=SurfaceState.OK,
        backlog=0,
        ssot_state=SsotState.OK,
        late_ticks=0,
        rejected={},
        last_command=None,
        errors=[],
        degraded=[],
        repair=scheduler.status(),
    )
    builder = StatusBuilder(
        version="test", process_id="test:1", pid=1, started_ms=T0, calendar=calendar.default
    )
    encoded = encode_bounded(builder.build(facts))
    Draft202012Validator(load_schema(ContractName.STATUS_V2)).validate(msgspec.json.decode(encoded))
    return msgspec.json.decode(encoded, type=StatusV2)


def test_the_scheduled_repair_fetches_the_lost_minute_and_publishes_the_buckets_above(
    tmp_path: Path, always_open: CalendarProfile, redis_server: RedisServer
) -> None:
    calendars = {"EURUSD": always_open.default}
    clock = ManualClock(T0)
    generator = TickGenerator(7, calendars, 30)
    history = Lacking(SimBroker(generator, ["EURUSD"], clock, BarSpec(), calendars), {LOST})
    store = JsonlStore(tmp_path / "ssot")
    store.open()
    metrics = Metrics(PipelineCounts)
    finished: list[RepairRun] = []
    ran = asyncio.Event()

    def on_run(run: RepairRun) -> None:
        metrics.repair_finished(run)
        finished.append(run)
        ran.set()

    async def scenario() -> None:
        client = connect_redis(redis_server.unix_url, Secrets())
        surface = RedisSurface(
            client,
            KEYS,
            TailCache(500),
            events_retention_s=600,
            snapshot_bars=500,
            preview_interval_ms=20,
            clock=SystemClock(),  # only paces previews; the pipeline runs on the manual clock
        )
        publishing = asyncio.create_task(surface.run())
        repairing: asyncio.Task[None] | None = None
        try:
            pipeline = Pipeline(
                history=history,
                store=store,
                calendars=calendars,
                timeframes=TFS,
                spec=BarSpec(),
                rails=TickRails(frozenset({"EURUSD"})),
                sink=surface,
                start_ms={"EURUSD": T0},
                retry_base_ms=1_000,
                budget=HistoryBudget(clock),
            )
            # Ticks were seen in LOST, so an empty answer for it does not make it quiet.
            clock.set(LOST)
            for tick in generator.minute("EURUSD", LOST).ticks():
                pipeline.on_tick(tick, tick.ts_ms)
            clock.set(T0 + DAY_MS + 5 * MINUTE_MS)
            for _ in range(12):  # the day's finals, then the empty-answer retries run out
                await pipeline.advance(clock.now_ms())
                clock.advance(MINUTE_MS)
            assert store.latest("EURUSD", Timeframe.M1, LOST) is None
            for tf, open_ms in ABOVE.items():
                assert store.latest("EURUSD", tf, open_ms) is None, tf  # waiting on LOST

            ctx = CommandContext(pipeline, store, surface, calendars, TFS, RepairCaps())
            runner = CommandRunner(ctx, clock)
            scheduler = RepairScheduler(
                ctx,
                runner,
                clock,
                symbols=["EURUSD"],
                interval_s=300,
                window_hours=24,
                on_run=on_run,
            )
            repairing = asyncio.create_task(scheduler.run())
            await asyncio.sleep(0)
            assert scheduler.next_run_ms == clock.now_ms() + 300_000

            async def next_run() -> RepairRun:
                """The fast path up to the run's window end, then the scheduled run."""
                due = scheduler.next_run_ms
                assert due is not None
                clock.set(due - 1)
                await pipeline.advance(due - 1)
                ran.clear()
                clock.set(due)
                await asyncio.wait_for(ran.wait(), WAIT_S)
                return finished[-1]

            # First run: the broker's history fails over the minute; the run says what it could not.
            history.failing = True
            first = await next_run()
            assert first.state is RepairState.DONE
            assert (first.fixed_minutes, first.unresolved, first.failed_requests) == (
                0,
                {"EURUSD": 1},
                1,
            )
            assert metrics.registry.get_sample_value("fxconnector_repair_unresolved_minutes") == 1

            # The broker's history has it now: the next run fetches it and derives above it.
            history.failing = False
            history.lacking.clear()
            second = await next_run()
            assert second.state is RepairState.DONE
            assert (second.fixed_minutes, second.unresolved_minutes, second.unresolved) == (
                1,
                0,
                {},
            )
            assert second.republished >= len(ABOVE)
            assert store.latest("EURUSD", Timeframe.M1, LOST) is not None
            for tf, open_ms in ABOVE.items():
                bar = store.latest("EURUSD", tf, open_ms)
                assert bar is not None, tf
                assert bar.source is Source.DERIVED
                assert bar.event_ts == bar.close_ms
                minutes = [
                    b.event() for b in store.bars("EURUSD", Timeframe.M1, open_ms, open_ms + tf.ms)
                ]
                (expected,) = derive(minutes, tf, always_open.default)
                assert bar.event() == msgspec.structs.replace(expected, rev=bar.rev)

            # Published to Redis: each bucket above the minute is in its snapshot as a final.
            await settled(surface)
            for tf, open_ms in ABOVE.items():
                found = await read_snapshot(client, "EURUSD", tf)
                assert found is not None, tf
                by_open = {b.open_ms: b for b in found[0]}
                assert by_open[open_ms].complete, tf
                assert by_open[open_ms].tick_count == store.latest("EURUSD", tf, open_ms).tick_count  # type: ignore[union-attr]

            status = status_of(scheduler, clock.now_ms(), always_open)
            assert status.repair is not None
            assert status.repair.runs == 2
            assert status.repair.last_run == second
            assert status.repair.next_run_ms == scheduler.next_run_ms
            sample = metrics.registry.get_sample_value
            assert sample("fxconnector_repair_runs_total", {"state": "done"}) == 2
            assert sample("fxconnector_repair_fixed_minutes_total") == 1
            assert sample("fxconnector_repair_unresolved_minutes") == 0
            assert second.finished_ms is not None
            last_run_s = sample("fxconnector_repair_last_run_timestamp_seconds")
            assert last_run_s == second.finished_ms / 1000

        finally:
            if repairing is not None:
                repairing.cancel()
            await surface.stop()
            await publishing
            await client.aclose()

    asyncio.run(scenario())
    store.close()


def test_the_repair_and_operator_commands_take_turns(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    calendars = {"EURUSD": always_open.default}
    clock = ManualClock(T0 + HOUR_MS + MINUTE_MS)  # the window is the hour from T0
    store = JsonlStore(tmp_path / "ssot")
    store.open()

    class Sink:
        def finals(self, events: Sequence[OhlcvEvent]) -> None:
            pass

        def previews(self, events: Sequence[OhlcvEvent]) -> None:
            pass

    generator = TickGenerator(7, calendars, 30)
    broker = SimBroker(generator, ["EURUSD"], clock, BarSpec(), calendars)
    pipeline = Pipeline(
        history=broker.history_1m,
        store=store,
        calendars=calendars,
        timeframes=TFS,
        spec=BarSpec(),
        rails=TickRails(frozenset({"EURUSD"})),
        sink=Sink(),
        start_ms={"EURUSD": T0},
    )
    ctx = CommandContext(pipeline, store, Sink(), calendars, TFS, RepairCaps())
    runner = CommandRunner(ctx, clock)
    scheduler = RepairScheduler(
        ctx, runner, clock, symbols=["EURUSD"], interval_s=300, window_hours=1
    )

    async def scenario() -> None:
        with runner.hold("an operator's backfill"):
            skipped = await scheduler.run_once()
        assert (skipped.state, skipped.detail) == (
            RepairState.SKIPPED,
            "an operator command is running",
        )
        with runner.hold("scheduled repair"), pytest.raises(CommandError, match="busy"):  # noqa: SIM117
            with runner.hold("another"):
                pass
        done = await scheduler.run_once()
        # The whole hour was missing (nothing fetched yet): the repair fetched it.
        assert done.state is RepairState.DONE
        assert done.fixed_minutes == 60
        assert done.unresolved_minutes == 0

    asyncio.run(scenario())
    assert scheduler.runs == 2
    disabled = RepairScheduler(ctx, runner, clock, symbols=["EURUSD"], interval_s=0, window_hours=1)
    assert disabled.status() is None
    asyncio.run(disabled.run())  # returns at once
    store.close()
