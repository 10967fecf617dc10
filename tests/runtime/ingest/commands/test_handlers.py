"""Commands over a sim broker with injected outages: find exactly the gaps, repair them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.command import Command
from fxconnector.core.time_geom import MINUTE_MS, Timeframe, iso_utc
from fxconnector.core.validation.ticks import TickRails
from fxconnector.core.validation.validator import validate_command
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.ingest.broker.port import HistoryAnswer
from fxconnector.runtime.ingest.broker.sim.broker import SimBroker
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator
from fxconnector.runtime.ingest.commands.handlers import CommandContext, RepairCaps, execute
from fxconnector.runtime.ingest.commands.runner import CommandRunner
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.sinks import RecordingSink

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z
HOURS = 4
TFS = (Timeframe.M1, Timeframe.M5, Timeframe.M15, Timeframe.H1)
OUTAGES = [(T0 + 60 * MINUTE_MS, T0 + 75 * MINUTE_MS), (T0 + 200 * MINUTE_MS, T0 + 203 * MINUTE_MS)]


class Outages:
    """The sim's history with some ranges answered empty (the broker had an outage)."""

    def __init__(self, broker: SimBroker, hidden: list[tuple[int, int]]) -> None:
        self.broker = broker
        self.hidden = hidden

    async def __call__(self, symbol: str, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
        bars = (await self.broker.history_1m(symbol, from_ms, to_ms)).bars
        return [b for b in bars if not any(a <= b.open_ms < z for a, z in self.hidden)]


def command(text: str) -> Command:
    checked = validate_command(text)
    assert checked.value is not None, checked.problems
    return checked.value


LiveRun = tuple[CommandContext, Outages, RecordingSink, ManualClock, JsonlStore]


@pytest.fixture
def live_run(tmp_path: Path, always_open: CalendarProfile) -> Iterator[LiveRun]:
    calendars = {"EURUSD": always_open.default}
    clock = ManualClock(T0)
    generator = TickGenerator(7, calendars, 30)
    broker = SimBroker(generator, ["EURUSD"], clock, BarSpec(), calendars)
    history = Outages(broker, list(OUTAGES))
    store = JsonlStore(tmp_path / "ssot")
    store.open()
    sink = RecordingSink()
    pipeline = Pipeline(
        history=history,
        store=store,
        calendars=calendars,
        timeframes=TFS,
        spec=BarSpec(),
        rails=TickRails(frozenset({"EURUSD"})),
        sink=sink,
        start_ms={"EURUSD": T0},
        safety_delay_ms=2_000,
        retry_base_ms=1_000,
    )

    async def drive() -> None:
        for minute in range(T0, T0 + HOURS * 3_600_000, MINUTE_MS):
            for tick in generator.minute("EURUSD", minute).ticks():
                pipeline.on_tick(tick, tick.ts_ms)
            for second in range(0, 60, 10):
                clock.set(minute + MINUTE_MS + second * 1000)
                await pipeline.advance(clock.now_ms())
        # One more minute, so a 4-hour window ending at the last closed minute starts at T0.
        clock.set(T0 + HOURS * 3_600_000 + 70_000)
        await pipeline.advance(clock.now_ms())

    asyncio.run(drive())
    ctx = CommandContext(pipeline, store, sink, calendars, TFS, RepairCaps())
    yield ctx, history, sink, clock, store
    store.close()


def test_tail_guard_finds_exactly_the_outages_and_repairs_them(
    live_run: tuple[CommandContext, Outages, RecordingSink, ManualClock, JsonlStore],
) -> None:
    ctx, history, sink, clock, store = live_run
    now = clock.now_ms()
    audit = asyncio.run(
        execute(
            command(
                f'{{"cmd":"tail_guard","req_id":"a1","ts":{now},'
                '"args":{"symbols":["EURUSD"],"window_hours":4,"repair":false}}'
            ),
            ctx,
            now,
        )
    )
    before = audit["symbols"]["EURUSD"]["before"]
    # Exactly the outage ranges are missing (the sim traded in every minute of them) ...
    assert before["missing_ranges_ms"] == [(a, b) for a, b in OUTAGES]
    assert before["coverage"]["missing"] == 15 + 3
    # ... and the sim's quiet minutes (no ticks, so no bar) are quiet, not missing.
    quiet = [
        m
        for m in range(T0, T0 + HOURS * 3_600_000 - MINUTE_MS, MINUTE_MS)
        if store.latest("EURUSD", Timeframe.M1, m) is None
        and not any(a <= m < b for a, b in OUTAGES)
    ]
    assert before["coverage"]["quiet"] == len(quiet)
    # Derived buckets over the gaps were never built (nothing is invented).
    assert store.latest("EURUSD", Timeframe.M5, OUTAGES[0][0]) is None
    assert store.latest("EURUSD", Timeframe.H1, T0 + 3_600_000) is None

    history.hidden = []  # the broker's history is back
    published_before = len(sink.finals_seen)
    repaired = asyncio.run(
        execute(
            command(
                f'{{"cmd":"tail_guard","req_id":"a2","ts":{now},'
                '"args":{"symbols":["EURUSD"],"window_hours":4,"repair":true}}'
            ),
            ctx,
            now,
        )
    )
    entry = repaired["symbols"]["EURUSD"]
    assert sum(r["new"] for r in entry["repaired"]) == 18
    assert entry["after"]["coverage"]["missing"] == 0
    assert entry["after"]["missing_ranges"] == []
    assert entry["after"]["derived_missing"] == {}
    assert entry["deferred_ranges"] == []
    hour = store.latest("EURUSD", Timeframe.H1, T0 + 3_600_000)
    assert hour is not None
    assert hour.tick_count == sum(
        b.tick_count for b in store.bars("EURUSD", Timeframe.M1, T0 + 3_600_000, T0 + 7_200_000)
    )
    fresh = sink.finals_seen[published_before:]
    assert {(e.tf, e.open_ms) for e in fresh} >= {
        (Timeframe.H1, T0 + 3_600_000),
        (Timeframe.M5, OUTAGES[0][0]),
    }


def test_backfill_of_a_corrected_range_publishes_revisions(
    live_run: tuple[CommandContext, Outages, RecordingSink, ManualClock, JsonlStore],
) -> None:
    ctx, history, sink, clock, store = live_run
    now = clock.now_ms()
    original = history.broker.history_1m

    async def corrected(symbol: str, from_ms: int, to_ms: int) -> HistoryAnswer:
        answer = await original(symbol, from_ms, to_ms)
        bars = [
            msgspec.structs.replace(b, high=b.high + 0.0005)
            if b.open_ms == T0 + 10 * MINUTE_MS
            else b
            for b in answer.bars
        ]
        return HistoryAnswer(bars, answer.rejected, answer.passed_until_ms)

    history.hidden = []
    history.broker.history_1m = corrected  # type: ignore[method-assign]
    result = asyncio.run(
        execute(
            command(
                f'{{"cmd":"backfill","req_id":"b1","ts":{now},"args":{{"symbol":"EURUSD",'
                f'"from_ms":{T0},"to_ms":{T0 + 30 * MINUTE_MS}}}}}'
            ),
            ctx,
            now,
        )
    )
    assert result["symbols"]["EURUSD"]["revisions"] == 1
    assert [r.rev for r in store.revisions("EURUSD", Timeframe.M1, T0 + 10 * MINUTE_MS)] == [0, 1]
    assert [r.rev for r in store.revisions("EURUSD", Timeframe.M5, T0 + 10 * MINUTE_MS)] == [0, 1]
    assert [r.rev for r in store.revisions("EURUSD", Timeframe.H1, T0)] == [0, 1]
    revised = [e for e in sink.finals_seen if e.rev == 1]
    assert {e.tf for e in revised} == {Timeframe.M1, Timeframe.M5, Timeframe.M15, Timeframe.H1}
    again = asyncio.run(
        execute(
            command(
                f'{{"cmd":"backfill","req_id":"b2","ts":{now},"args":{{"symbol":"EURUSD",'
                f'"from_ms":{T0},"to_ms":{T0 + 30 * MINUTE_MS}}}}}'
            ),
            ctx,
            now,
        )
    )
    assert again["symbols"]["EURUSD"]["new"] == 0  # idempotent
    assert again["symbols"]["EURUSD"]["revisions"] == 0
    assert iso_utc(T0) == "2019-02-04T00:00:00Z"


def test_republish_and_rebuild(
    live_run: tuple[CommandContext, Outages, RecordingSink, ManualClock, JsonlStore],
) -> None:
    ctx, _, sink, clock, store = live_run
    now = clock.now_ms()
    before = len(sink.finals_seen)
    result = asyncio.run(
        execute(
            command(
                f'{{"cmd":"republish_tail","req_id":"r1","ts":{now},'
                '"args":{"symbol":"EURUSD","tf":"5m","bars":10}}'
            ),
            ctx,
            now,
        )
    )
    assert result == {"republished": 10}
    assert [e.tf for e in sink.finals_seen[before:]] == [Timeframe.M5] * 10
    result = asyncio.run(
        execute(
            command(
                f'{{"cmd":"rebuild_derived","req_id":"r2","ts":{now},"args":{{"symbol":"EURUSD",'
                f'"from_ms":{T0},"to_ms":{T0 + 3_600_000}}}}}'
            ),
            ctx,
            now,
        )
    )
    assert result == {"rederived": 0, "revisions": 0}  # nothing changed: idempotent
    assert store.latest("EURUSD", Timeframe.M5, T0) is not None


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_every_command_is_logged_with_its_arguments_and_result(
    live_run: tuple[CommandContext, Outages, RecordingSink, ManualClock, JsonlStore],
) -> None:
    ctx, _, _, clock, _ = live_run
    now = clock.now_ms()
    logger = logging.getLogger("fxconnector.commands")
    handler = _Records()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        runner = CommandRunner(ctx, clock)
        last = asyncio.run(
            runner.run(
                command(
                    f'{{"cmd":"republish_tail","req_id":"r9","ts":{now},'
                    '"args":{"symbol":"EURUSD","tf":"5m","bars":3}}'
                )
            )
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    logged = [(r.levelno, r.getMessage(), getattr(r, "fields", {})) for r in handler.records]
    assert logged[0] == (
        logging.INFO,
        "command.started",
        {
            "cmd": "republish_tail",
            "req_id": "r9",
            "args": {"symbol": "EURUSD", "tf": "5m", "bars": 3},
        },
    )
    level_, event, fields = logged[1]
    assert (level_, event) == (logging.INFO, "command.finished")
    assert fields["state"] == "done"
    assert fields["result"] == last.result == {"republished": 3}
    assert fields["duration_s"] >= 0
    assert len(logged) == 2
