"""The sim broker: ticks on a ManualClock, and history that is exactly their aggregation."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from fxconnector.core.builders.spec import BarSpec, OpenMode, PriceSide, VolumeMode
from fxconnector.core.builders.vector import build
from fxconnector.core.errors import BrokerDisconnected, ConfigError
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.status import BrokerState
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import HOUR_MS, MINUTE_MS, Timeframe, to_ms
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.ingest.broker.port import BrokerPort, SessionEvent
from fxconnector.runtime.ingest.broker.sim.broker import SimBroker
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator
from tests.conftest import calendar_profile

SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")
T = TypeVar("T")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return to_ms(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC))


WEDNESDAY = utc(2024, 3, 6)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a test coroutine with a bound on the whole of it."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout=30)

    return asyncio.run(bounded())


def make(
    clock: ManualClock,
    *,
    symbols: tuple[str, ...] = SYMBOLS,
    spec: BarSpec | None = None,
    ticks_per_minute: int = 60,
    profile: str = "fx_ny",
) -> tuple[SimBroker, TickGenerator]:
    calendars = {s: calendar_profile(profile).for_symbol(s) for s in symbols}
    generator = TickGenerator(7, calendars, ticks_per_minute=ticks_per_minute)
    return SimBroker(generator, symbols, clock, spec or BarSpec(), calendars), generator


def aggregate(
    generator: TickGenerator, symbol: str, from_ms: int, to_ms: int, spec: BarSpec
) -> list[OhlcvEvent]:
    calendar = calendar_profile("fx_ny").for_symbol(symbol)
    bars, late = build(generator.between(symbol, from_ms, to_ms), (Timeframe.M1,), calendar, spec)
    assert late == 0
    return bars[Timeframe.M1].events(symbol, Timeframe.M1, complete=True, source=Source.HISTORY)


def expected_ticks(generator: TickGenerator, from_ms: int, through_ms: int) -> list[Tick]:
    merged = [t for s in SYMBOLS for t in generator.between(s, from_ms, through_ms + 1).ticks()]
    return sorted(merged, key=lambda t: t.ts_ms)  # stable: equal times keep symbol order


def test_sim_broker_satisfies_the_port() -> None:
    async def scenario() -> None:
        broker, _ = make(ManualClock(WEDNESDAY))
        port: BrokerPort = broker
        assert port.kind == "sim"

    run(scenario())


@pytest.mark.parametrize(
    "spec",
    [
        BarSpec(),
        BarSpec(PriceSide.MID, OpenMode.FIRST_TICK, VolumeMode.SIZE),
        BarSpec(PriceSide.ASK, OpenMode.FIRST_TICK, VolumeMode.TICKS),
    ],
)
def test_history_is_the_aggregation_of_its_own_ticks(spec: BarSpec) -> None:
    async def scenario() -> None:
        now = WEDNESDAY + 14 * HOUR_MS + 30 * MINUTE_MS + 20_000
        running = now - now % MINUTE_MS
        broker, generator = make(ManualClock(now), spec=spec)
        for symbol in SYMBOLS:
            history = (
                await broker.history_1m(symbol, WEDNESDAY + 10 * HOUR_MS, running + HOUR_MS)
            ).bars
            assert history == aggregate(generator, symbol, WEDNESDAY + 10 * HOUR_MS, running, spec)
            assert len(history) > 250
            # the running minute already has ticks, but no history yet
            assert len(generator.between(symbol, running, now)) > 0
            assert history[-1].open_ms == running - MINUTE_MS
            assert all(e.complete and e.source is Source.HISTORY for e in history)
            assert all(e.event_ts == e.close_ms == e.open_ms + MINUTE_MS - 1 for e in history)
            assert all(e.rev == 0 and e.tf is Timeframe.M1 for e in history)

    run(scenario())


def test_history_appears_as_minutes_end() -> None:
    async def scenario() -> None:
        clock = ManualClock(WEDNESDAY + 9 * HOUR_MS + 59_999)
        broker, generator = make(clock)
        ask = (WEDNESDAY + 9 * HOUR_MS, WEDNESDAY + 10 * HOUR_MS)
        assert (await broker.history_1m("EURUSD", *ask)).bars == []
        clock.advance(1)  # 09:00 has ended
        first = (await broker.history_1m("EURUSD", *ask)).bars
        assert [e.open_ms for e in first] == [WEDNESDAY + 9 * HOUR_MS]
        clock.set(WEDNESDAY + 12 * HOUR_MS)
        full = (await broker.history_1m("EURUSD", *ask)).bars
        assert full == aggregate(generator, "EURUSD", *ask, BarSpec())
        assert full[0] == first[0]

    run(scenario())


def test_quiet_minutes_have_no_bar() -> None:
    async def scenario() -> None:
        broker, generator = make(ManualClock(WEDNESDAY + 24 * HOUR_MS), ticks_per_minute=1)
        start, end = WEDNESDAY + 2 * HOUR_MS, WEDNESDAY + 5 * HOUR_MS
        history = (await broker.history_1m("EURUSD", start, end)).bars
        opens = {e.open_ms for e in history}
        minutes = range(start, end, MINUTE_MS)
        quiet = {m for m in minutes if len(generator.minute("EURUSD", m)) == 0}
        assert len(quiet) > 30  # open minutes without a tick
        assert opens == set(minutes) - quiet
        assert sum(e.tick_count for e in history) == len(generator.between("EURUSD", start, end))

    run(scenario())


def test_history_of_a_closed_or_future_range_is_empty() -> None:
    async def scenario() -> None:
        now = WEDNESDAY + 10 * HOUR_MS + 30_000
        broker, _ = make(ManualClock(utc(2024, 3, 12)))
        assert (await broker.history_1m("EURUSD", utc(2024, 3, 9), utc(2024, 3, 10))).bars == []
        broker, _ = make(ManualClock(now))
        assert (await broker.history_1m("EURUSD", now - 20_000, now + HOUR_MS)).bars == []
        assert (await broker.history_1m("EURUSD", now + MINUTE_MS, now + HOUR_MS)).bars == []

    run(scenario())


def test_history_answers_minutes_whose_open_is_in_the_range() -> None:
    async def scenario() -> None:
        broker, _ = make(ManualClock(WEDNESDAY + 12 * HOUR_MS))
        start, end = WEDNESDAY + 10 * HOUR_MS, WEDNESDAY + 11 * HOUR_MS
        whole = (await broker.history_1m("GBPUSD", start - HOUR_MS, end + HOUR_MS)).bars
        part = (await broker.history_1m("GBPUSD", start + 30_000, end + 30_000)).bars
        assert part == [e for e in whole if start + 30_000 <= e.open_ms < end + 30_000]
        assert part[0].open_ms == start + MINUTE_MS
        assert part[-1].open_ms == end

    run(scenario())


def test_previous_close_history_does_not_depend_on_where_the_range_starts() -> None:
    async def scenario() -> None:
        spec = BarSpec(open_mode=OpenMode.PREVIOUS_CLOSE)
        broker, _ = make(ManualClock(utc(2024, 3, 11, 12)), spec=spec)
        # Monday morning: the bar before the range is the Friday before the weekend
        long = (await broker.history_1m("EURUSD", utc(2024, 3, 8, 20), utc(2024, 3, 11, 3))).bars
        short = (await broker.history_1m("EURUSD", utc(2024, 3, 10, 21), utc(2024, 3, 11, 3))).bars
        assert short == [e for e in long if e.open_ms >= utc(2024, 3, 10, 21)]
        friday_close = [e for e in long if e.open_ms < utc(2024, 3, 9)][-1].close
        assert short[0].open == friday_close
        assert all(b.open == a.close for a, b in itertools.pairwise(short))

    run(scenario())


def test_unknown_symbols_are_config_errors_naming_them() -> None:
    async def scenario() -> None:
        broker, generator = make(ManualClock(WEDNESDAY + 12 * HOUR_MS), symbols=("EURUSD",))
        with pytest.raises(ConfigError, match="GBPUSD"):
            await broker.history_1m("GBPUSD", WEDNESDAY, WEDNESDAY + HOUR_MS)
        calendars = {"EURUSD": generator.calendar("EURUSD")}
        with pytest.raises(ConfigError, match="NOPE"):
            SimBroker(generator, ["EURUSD", "NOPE"], ManualClock(0), BarSpec(), calendars)

    run(scenario())


class Collector:
    """Consumes `ticks()` in a task and tells waiters when more arrived."""

    def __init__(self, broker: SimBroker) -> None:
        self.ticks: list[Tick] = []
        self._arrived = asyncio.Event()
        self.task = asyncio.create_task(self._run(broker))

    async def _run(self, broker: SimBroker) -> None:
        async for tick in broker.ticks():
            self.ticks.append(tick)
            self._arrived.set()

    async def settle(self, count: int) -> None:
        """Wait (bounded) until `count` ticks arrived, then let the loop run on a little."""

        async def until() -> None:
            while len(self.ticks) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(until(), timeout=5)
        for _ in range(50):  # a broker that ran ahead of the clock would deliver more here
            await asyncio.sleep(0)


def test_ticks_follow_the_clock_minute_by_minute() -> None:
    async def scenario() -> None:
        start = WEDNESDAY + 10 * HOUR_MS + 25_500
        clock = ManualClock(start)
        broker, generator = make(clock)
        await broker.connect()
        consumer = Collector(broker)
        got = consumer.ticks
        for minute in range(1, 8):
            clock.set(start - start % MINUTE_MS + minute * MINUTE_MS)
            expected = expected_ticks(generator, start, clock.now_ms())
            await consumer.settle(len(expected))
            assert got == expected
            assert max(t.ts_ms for t in got) <= clock.now_ms()
        # a tick exactly at the clock's time is due; ticks of the running minute come with it
        clock.advance(31_234)
        await consumer.settle(len(expected_ticks(generator, start, clock.now_ms())))
        assert got == expected_ticks(generator, start, clock.now_ms())
        assert {t.symbol for t in got} == set(SYMBOLS)
        assert got[0].ts_ms >= start  # earlier ticks of the first minute were skipped
        assert len(generator.between("EURUSD", start - start % MINUTE_MS, start)) > 0
        assert all(a.ts_ms <= b.ts_ms for a, b in itertools.pairwise(got))
        await broker.close()
        await asyncio.wait_for(consumer.task, timeout=5)

    run(scenario())


def test_ticks_skip_the_weekend() -> None:
    async def scenario() -> None:
        start = utc(2024, 3, 8, 21, 58)  # Friday, two minutes before the weekly close
        clock = ManualClock(start)
        broker, generator = make(clock)
        await broker.connect()
        consumer = Collector(broker)
        got = consumer.ticks
        clock.set(utc(2024, 3, 10, 21, 1))  # Sunday, a minute after the open
        expected = expected_ticks(generator, start, clock.now_ms())
        await consumer.settle(len(expected))
        assert got == expected
        on_friday = [t for t in got if t.ts_ms < utc(2024, 3, 8, 22)]
        on_sunday = [t for t in got if t.ts_ms >= utc(2024, 3, 10, 21)]
        assert on_friday
        assert on_sunday
        assert len(on_friday) + len(on_sunday) == len(got)
        await broker.close()
        await asyncio.wait_for(consumer.task, timeout=5)

    run(scenario())


def test_close_ends_a_waiting_tick_stream_and_the_session() -> None:
    async def scenario() -> None:
        clock = ManualClock(WEDNESDAY + 10 * HOUR_MS)
        broker, _ = make(clock)
        events: list[SessionEvent] = []

        async def watch() -> None:
            async for event in broker.session_events():
                events.append(event)

        watcher = asyncio.create_task(watch())
        await broker.connect()
        await broker.connect()  # idempotent
        consumer = Collector(broker)
        got = consumer.ticks
        await consumer.settle(0)
        assert got == []  # the clock stands still: nothing is due
        clock.advance(5_000)
        await broker.close()
        await broker.close()  # idempotent
        await asyncio.wait_for(consumer.task, timeout=5)
        await asyncio.wait_for(watcher, timeout=5)
        assert [e.state for e in events] == [BrokerState.CONNECTED, BrokerState.STOPPED]
        assert [e.ts_ms for e in events] == [
            WEDNESDAY + 10 * HOUR_MS,
            WEDNESDAY + 10 * HOUR_MS + 5_000,
        ]

    run(scenario())


def test_ticks_before_connect_are_refused() -> None:
    async def scenario() -> None:
        broker, _ = make(ManualClock(WEDNESDAY))
        with pytest.raises(BrokerDisconnected):
            await anext(broker.ticks())

    run(scenario())
