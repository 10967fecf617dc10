"""The fast path (issue 12): it follows the history plan, wakes on the minute boundary,
publishes each symbol's final without waiting for the next symbol's call, and groups the flushes
of answers that arrive together."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pytest

from fxconnector.config.secrets import Secrets
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.history_plan import HistoryPlan, plan_history
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.status import SurfaceState
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.core.validation.ticks import TickRails
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.ingest.polling.live import advance_loop
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.redis_connect import connect_redis
from fxconnector.runtime.publish.redis_surface import RedisSurface
from fxconnector.runtime.store.cache_tail import TailCache
from fxconnector.runtime.store.port import AppendResult
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.redis_server import RedisServer
from tests.runtime.ingest.polling.test_live import T0, _bar, _until
from tests.sinks import RecordingSink

DELAY_MS = 2_000


class TimedSink(RecordingSink):
    """Records when (on the test's clock) each 1m final was handed over."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self.clock = clock
        self.handed_ms: dict[tuple[str, int], int] = {}

    def finals(self, events: list[OhlcvEvent]) -> None:  # type: ignore[override]
        for event in events:
            if event.tf is Timeframe.M1:
                self.handed_ms.setdefault((event.symbol, event.open_ms), self.clock.now_ms())
        super().finals(events)


class RecordingHistory:
    """Answers one bar per asked minute at once, recording each call with the clock's time."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.calls: list[tuple[int, str, int, int]] = []

    async def __call__(self, symbol: str, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
        self.calls.append((self.clock.now_ms(), symbol, from_ms, to_ms))
        await asyncio.sleep(0)
        return [_bar(symbol, m) for m in range(from_ms, to_ms, MINUTE_MS)]


def _pipeline(
    tmp_path: Path,
    profile: CalendarProfile,
    symbols: list[str],
    history: object,
    sink: RecordingSink,
    start_ms: int,
    plan: HistoryPlan | None = None,
) -> tuple[Pipeline, JsonlStore]:
    store = JsonlStore(tmp_path / "ssot")
    store.open()
    pipeline = Pipeline(
        history=history,  # type: ignore[arg-type]
        store=store,
        calendars=dict.fromkeys(symbols, profile.default),
        timeframes=(Timeframe.M1, Timeframe.M5),
        spec=BarSpec(),
        rails=TickRails(frozenset(symbols)),
        sink=sink,
        start_ms=dict.fromkeys(symbols, start_ms),
        safety_delay_ms=DELAY_MS,
        plan=plan,
    )
    return pipeline, store


def test_past_the_budget_each_symbol_is_asked_at_its_turn_and_no_final_exceeds_the_bound(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    symbols = [f"SYM{i:03d}" for i in range(7)]
    # 3 requests a minute, 1 reserved: 2 for the fast path, so 7 symbols take 4 minutes.
    plan = plan_history(7, 3, reserved_per_min=1, safety_delay_ms=DELAY_MS, call_allowance_ms=0)
    assert (plan.every_minutes, plan.group_size) == (4, 2)
    clock = ManualClock(T0)
    history = RecordingHistory(clock)
    sink = TimedSink(clock)
    pipeline, store = _pipeline(tmp_path, always_open, symbols, history, sink, T0, plan)

    async def scenario() -> None:
        for minute in range(1, 41):
            clock.set(T0 + minute * MINUTE_MS + DELAY_MS)
            await pipeline.advance(clock.now_ms())

    asyncio.run(scenario())
    store.close()
    by_boundary: dict[int, list[str]] = defaultdict(list)
    for at_ms, symbol, _from_ms, to_ms in history.calls:
        assert to_ms == at_ms - DELAY_MS  # every ended minute of the symbol, up to now
        by_boundary[to_ms // MINUTE_MS].append(symbol)
    # The first boundary is a catch-up for everyone; then the round-robin turns.
    for boundary, asked in by_boundary.items():
        if boundary > T0 // MINUTE_MS + 4:
            assert asked == [symbols[i] for i in plan.asked_at(boundary)], boundary
            assert len(asked) <= plan.group_size
    # Every minute of every symbol is final, none later than the bound after its end.
    last_turn = T0 + 36 * MINUTE_MS
    lags = [
        handed - (open_ms + MINUTE_MS)
        for (symbol, open_ms), handed in sink.handed_ms.items()
        if open_ms < last_turn
    ]
    assert len(lags) == len(symbols) * 36
    assert max(lags) <= plan.bound_ms
    assert max(lags) == (plan.every_minutes - 1) * MINUTE_MS + DELAY_MS  # the bound is tight


def test_the_advance_loop_wakes_on_the_minute_boundary_not_on_a_timer(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    symbols = ["EURUSD", "GBPUSD"]
    clock = ManualClock(T0 + 10_000)
    history = RecordingHistory(clock)
    sink = RecordingSink()
    pipeline, store = _pipeline(tmp_path, always_open, symbols, history, sink, T0)
    advances: list[int] = []
    advance = pipeline.advance

    async def counted(now_ms: int) -> None:
        advances.append(now_ms)
        await advance(now_ms)

    pipeline.advance = counted  # type: ignore[method-assign]

    async def scenario() -> None:
        stop = asyncio.Event()
        loop = asyncio.create_task(advance_loop(pipeline, clock, stop))
        await _until(lambda: len(advances) == 1)
        # Inside minute 0, then minute 1 begun but 1 ms short of the safety delay: no advance.
        for at_ms in (T0 + 30_000, T0 + 50_000, T0 + MINUTE_MS + DELAY_MS - 1):
            clock.set(at_ms)
            for _ in range(50):
                await asyncio.sleep(0)
            assert len(advances) == 1, at_ms
        clock.set(T0 + MINUTE_MS + DELAY_MS)  # minute 0 ended plus the safety delay
        await _until(lambda: {e.symbol for e in sink.finals_seen} == set(symbols), 0.001)
        assert advances == [T0 + 10_000, T0 + MINUTE_MS + DELAY_MS]
        assert {c[1] for c in history.calls} == set(symbols)
        stop.set()
        await loop

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    store.close()


class OneGatePerSymbol:
    """History whose answer for a symbol waits until the test opens that symbol's gate."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.pending: list[str] = []

    async def __call__(self, symbol: str, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
        self.pending.append(symbol)
        try:
            await self.gates[symbol].wait()
        finally:
            self.pending.remove(symbol)
        return [_bar(symbol, m) for m in range(from_ms, to_ms, MINUTE_MS)]


def test_a_final_is_published_while_the_next_symbols_call_is_in_flight(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    symbols = ["EURUSD", "GBPUSD", "USDJPY"]
    clock = ManualClock(T0 + MINUTE_MS + DELAY_MS)
    history = OneGatePerSymbol()
    sink = RecordingSink()
    pipeline, store = _pipeline(tmp_path, always_open, symbols, history, sink, T0)

    async def scenario() -> None:
        advance = asyncio.create_task(pipeline.advance(clock.now_ms()))
        await _until(lambda: history.pending == ["EURUSD"])  # one call in flight at a time
        history.gates["EURUSD"].set()
        await _until(lambda: history.pending == ["GBPUSD"])
        # EURUSD's final is durable and handed over while GBPUSD's call is still pending.
        await _until(lambda: [e.symbol for e in sink.finals_seen] == ["EURUSD"], 0.001)
        history.gates["GBPUSD"].set()
        await _until(lambda: history.pending == ["USDJPY"])
        await _until(lambda: [e.symbol for e in sink.finals_seen] == ["EURUSD", "GBPUSD"], 0.001)
        history.gates["USDJPY"].set()
        await advance
        assert [e.symbol for e in sink.finals_seen if e.tf is Timeframe.M1] == symbols

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    store.close()


class GatedFlushStore(JsonlStore):
    """The JSONL store whose flush (in a worker thread) waits for the test's gate; it counts
    flushes and which appended bars each one covered."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.started = threading.Event()
        self.flushes = 0
        self.appended = 0
        self.covered: list[int] = []

    def append(self, bars: Sequence[OhlcvEvent], reason: str = "") -> list[AppendResult]:
        self.appended += len(bars)
        return super().append(bars, reason)

    def flush(self) -> None:
        covered = self.appended
        self.started.set()
        self.gate.wait(timeout=10)
        super().flush()
        self.flushes += 1
        self.covered.append(covered)


def test_answers_that_arrive_during_a_flush_share_the_next_one(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    """Group commit: while one flush runs, the finals stored meanwhile wait for one more flush
    together, and none is handed over before a flush that covers it has ended."""
    symbols = ["EURUSD", "GBPUSD", "USDJPY"]
    store = GatedFlushStore(tmp_path / "ssot")
    store.open()
    sink = RecordingSink()
    pipeline = Pipeline(
        history=RecordingHistory(ManualClock(T0)),
        store=store,
        calendars=dict.fromkeys(symbols, always_open.default),
        timeframes=(Timeframe.M1,),
        spec=BarSpec(),
        rails=TickRails(frozenset(symbols)),
        sink=sink,
        start_ms=dict.fromkeys(symbols, T0),
    )

    async def scenario() -> None:
        first = asyncio.create_task(_store_and_commit(pipeline, "EURUSD"))
        await _until(store.started.is_set, 0.001)  # EURUSD's flush is running
        later = [asyncio.create_task(_store_and_commit(pipeline, s)) for s in ("GBPUSD", "USDJPY")]
        for _ in range(20):
            await asyncio.sleep(0)
        assert sink.finals_seen == []  # nothing handed over while its flush runs
        store.gate.set()
        await asyncio.gather(first, *later)

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert store.flushes == 2  # one for EURUSD, one shared by the two that came during it
    assert store.covered == [1, 3]
    store.close()
    assert sorted(e.symbol for e in sink.finals_seen) == sorted(symbols)


async def _store_and_commit(pipeline: Pipeline, symbol: str) -> None:
    pipeline.store_finals(symbol, [_bar(symbol, T0)])
    await pipeline.publish_durable((), True)


@pytest.mark.redis
def test_the_last_symbols_final_reaches_redis_before_derivation_takes_the_loop(
    tmp_path: Path, always_open: CalendarProfile, redis_server: RedisServer
) -> None:
    """Finals first (issue 12): `advance` lets the surface acknowledge every 1m final of the
    fast path before a derive slice runs, so when Redis acknowledges any symbol's 1m final no
    derived bar of that advance is stored yet."""
    symbols = ["EURUSD", "GBPUSD", "USDJPY"]
    store = JsonlStore(tmp_path / "ssot")
    store.open()
    derived_seen_at_ack: dict[str, int] = {}

    def on_published(event: OhlcvEvent, _latency_s: float) -> None:
        if event.tf is Timeframe.M1:
            derived = sum(len(list(store.bars(s, Timeframe.M5))) for s in symbols)
            derived_seen_at_ack[event.symbol] = derived

    async def scenario() -> None:
        client = connect_redis(redis_server.url, Secrets())
        surface = RedisSurface(
            client,
            SurfaceKeys("fxtest"),
            TailCache(100),
            events_retention_s=600,
            snapshot_bars=50,
            preview_interval_ms=60_000,
            clock=ManualClock(T0),
            on_published=on_published,
        )
        publisher = asyncio.create_task(surface.run())
        try:
            await _until(lambda: surface.state is SurfaceState.OK, 0.005)
            pipeline = Pipeline(
                history=RecordingHistory(ManualClock(T0)),
                store=store,
                calendars=dict.fromkeys(symbols, always_open.default),
                timeframes=(Timeframe.M1, Timeframe.M5),
                spec=BarSpec(),
                rails=TickRails(frozenset(symbols)),
                sink=surface,
                start_ms=dict.fromkeys(symbols, T0),
                safety_delay_ms=DELAY_MS,
                settle=surface.settle,
            )
            # Five minutes ended: each symbol's five 1m finals make its first 5m bucket ready.
            await pipeline.advance(T0 + 5 * MINUTE_MS + DELAY_MS)
            await asyncio.wait_for(surface.drain(), 15)
        finally:
            await surface.stop()
            await publisher
            await client.aclose()

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert derived_seen_at_ack == dict.fromkeys(symbols, 0)
    assert all(len(list(store.bars(s, Timeframe.M5))) == 1 for s in symbols)  # derived after
    store.close()
