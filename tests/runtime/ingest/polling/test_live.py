"""The live loops: previews and closes keep flowing while a history call is pending."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.core.validation.ticks import TickRails
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.ingest.polling.live import advance_loop, preview_loop
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.store.port import AppendResult
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.sinks import RecordingSink

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z, Monday
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")
#: Loop turns a condition may take to come true before the test gives up.
TURNS = 10_000


class GatedHistory:
    """A broker whose history call waits until the test opens the gate, then answers one bar
    per asked minute."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.pending = 0
        self.calls: list[tuple[str, int, int]] = []

    async def __call__(self, symbol: str, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
        self.calls.append((symbol, from_ms, to_ms))
        self.pending += 1
        try:
            await self.gate.wait()
        finally:
            self.pending -= 1
        return [_bar(symbol, m) for m in range(from_ms, to_ms, MINUTE_MS)]


def _bar(symbol: str, open_ms: int) -> OhlcvEvent:
    return OhlcvEvent(
        symbol=symbol,
        tf=Timeframe.M1,
        open_ms=open_ms,
        close_ms=open_ms + MINUTE_MS - 1,
        open=1.1,
        high=1.1002,
        low=1.0999,
        close=1.1001,
        volume=4,
        tick_count=4,
        complete=True,
        source=Source.HISTORY,
        event_ts=open_ms + MINUTE_MS - 1,
        rev=0,
    )


async def _until(condition: object, pause_s: float = 0) -> None:
    """Give the loop turns until `condition` holds (with `pause_s`, also time for the worker
    threads that fsync)."""
    assert callable(condition)
    for _ in range(TURNS):
        if condition():
            return
        await asyncio.sleep(pause_s)
    raise AssertionError("the condition never came true")


def test_previews_flow_while_a_history_call_is_pending(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    calendars = dict.fromkeys(SYMBOLS, always_open.default)
    clock = ManualClock(T0 + 10_000)
    history = GatedHistory()
    sink = RecordingSink()
    store = JsonlStore(tmp_path / "ssot")
    store.open()
    pipeline = Pipeline(
        history=history,
        store=store,
        calendars=calendars,
        timeframes=(Timeframe.M1, Timeframe.M5),
        spec=BarSpec(),
        rails=TickRails(frozenset(SYMBOLS)),
        sink=sink,
        start_ms=dict.fromkeys(SYMBOLS, T0),
        safety_delay_ms=2_000,
    )
    pumped: list[int] = []

    def pump() -> None:
        pumped.append(sum(len(pipeline.builder.previews(s)) for s in SYMBOLS))

    def tick(ts_ms: int) -> None:
        for symbol in SYMBOLS:
            assert pipeline.on_tick(Tick(symbol=symbol, bid=1.1, ask=1.1002, ts_ms=ts_ms), ts_ms)

    async def scenario() -> None:
        stop = asyncio.Event()
        loops = [
            asyncio.create_task(advance_loop(pipeline, clock, stop)),
            asyncio.create_task(preview_loop(pipeline, clock.now_ms, 0, stop, pump)),
        ]
        tick(T0 + 10_000)
        clock.set(T0 + MINUTE_MS + 3_000)  # minute 0 is ready for the fast path
        await _until(lambda: history.pending == 1)
        # The broker now sits on the call. Time goes on, with ticks for minutes 1 and 2 and a
        # quiet stretch after them: previews are pumped and closed all the while.
        for minute in (1, 2):
            tick(T0 + minute * MINUTE_MS + 5_000)
            seen = len(pumped)
            await _until(lambda seen=seen: len(pumped) > seen + 3)
        clock.set(T0 + 3 * MINUTE_MS + 1_000)  # minute 2 ends with no tick after it
        await _until(lambda: any(p.open_ms == T0 + 2 * MINUTE_MS for p in sink.closed_previews))
        assert history.pending == 1
        assert len(history.calls) == 1
        assert sink.finals_seen == []
        closed_m1 = {(p.symbol, p.open_ms) for p in sink.closed_previews if p.tf is Timeframe.M1}
        assert closed_m1 == {(s, T0 + m * MINUTE_MS) for s in SYMBOLS for m in (0, 1, 2)}
        # Minute 2's 1m preview closed; the 5m bucket of every symbol is still open.
        assert pumped[-1] == len(SYMBOLS)
        assert max(pumped) == 2 * len(SYMBOLS)  # while a minute was open: its 1m and the 5m
        # The gate opens: the finals follow, for every symbol.
        history.gate.set()
        # Each symbol's finals follow its own flush (worker threads): time for them too.
        await _until(lambda: {e.symbol for e in sink.finals_seen} == set(SYMBOLS), 0.002)
        stop.set()
        await asyncio.gather(*loops)

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    store.close()


class DurabilityStore(JsonlStore):
    """The JSONL store, remembering which keys a flush that started after their append made
    durable (flushes run in worker threads, hence the lock)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.appended: set[tuple[str, Timeframe, int, int]] = set()
        self.durable: set[tuple[str, Timeframe, int, int]] = set()
        self._keys_lock = threading.Lock()

    def append(self, bars: Sequence[OhlcvEvent], reason: str = "") -> list[AppendResult]:
        results = super().append(bars, reason)
        with self._keys_lock:
            self.appended.update(
                (r.stored.symbol, r.stored.tf, r.stored.open_ms, r.stored.rev) for r in results
            )
        return results

    def flush(self) -> None:
        with self._keys_lock:
            covered = set(self.appended)
        super().flush()
        with self._keys_lock:
            self.durable |= covered


class CheckingSink(RecordingSink):
    def __init__(self, store: DurabilityStore) -> None:
        super().__init__()
        self.store = store
        self.not_durable: list[OhlcvEvent] = []

    def finals(self, events: Sequence[OhlcvEvent]) -> None:
        self.not_durable.extend(
            e for e in events if (e.symbol, e.tf, e.open_ms, e.rev) not in self.store.durable
        )
        super().finals(events)


class InstantHistory:
    async def __call__(self, symbol: str, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
        await asyncio.sleep(0)
        return [_bar(symbol, m) for m in range(from_ms, to_ms, MINUTE_MS)]


def test_a_final_is_published_only_once_durable_while_a_backfill_runs_beside(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    calendars = dict.fromkeys(SYMBOLS, always_open.default)
    start = T0 + 6 * 3_600_000
    clock = ManualClock(start)
    store = DurabilityStore(tmp_path / "ssot")
    store.open()
    sink = CheckingSink(store)
    pipeline = Pipeline(
        history=InstantHistory(),
        store=store,
        calendars=calendars,
        timeframes=(Timeframe.M1, Timeframe.M5, Timeframe.H1),
        spec=BarSpec(),
        rails=TickRails(frozenset(SYMBOLS)),
        sink=sink,
        start_ms=dict.fromkeys(SYMBOLS, start),
        max_chunk_minutes=30,
    )

    async def scenario() -> None:
        stop = asyncio.Event()
        live = asyncio.create_task(advance_loop(pipeline, clock, stop))
        backfill = asyncio.create_task(
            pipeline.fetch_range(
                "EURUSD", T0, start, caller="backfill", now_ms=start + 10 * MINUTE_MS
            )
        )
        for _ in range(40):  # live minutes go by while the backfill runs
            clock.advance(MINUTE_MS)
            await _until(
                lambda: pipeline.progress_ms("GBPUSD") >= clock.now_ms() - 2 * MINUTE_MS, 0.002
            )
        result = await backfill
        stop.set()
        await live
        assert result.new_bars == 6 * 60

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    store.close()
    assert sink.not_durable == []
    assert len(sink.finals_seen) > 6 * 60 + 40 * len(SYMBOLS)  # 1m and derived, both sources
