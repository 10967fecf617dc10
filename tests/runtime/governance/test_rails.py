"""The history budget under a fake clock: throttled, fast path first, deferred then resumed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import DAY_MS, MINUTE_MS, Timeframe
from fxconnector.core.validation.ticks import TickRails
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.governance.rails import BudgetConfig, HistoryBudget, Priority
from fxconnector.runtime.ingest.broker.sim.broker import SimBroker
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator
from fxconnector.runtime.ingest.polling.pipeline import FAST_PATH, Pipeline
from fxconnector.runtime.publish.sink import CountingSink
from fxconnector.runtime.store.ssot_jsonl import JsonlStore

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z


def test_token_bucket_throttles_and_fast_goes_first() -> None:
    async def scenario() -> None:
        clock = ManualClock(T0)
        budget = HistoryBudget(clock, BudgetConfig(requests_per_min=30, burst=5, fast_reserve=2))
        granted: list[tuple[str, int]] = []

        async def ask(caller: str, priority: Priority) -> None:
            async with budget.slot(caller, priority):
                granted.append((caller, clock.now_ms()))

        heavy = [asyncio.create_task(ask("backfill", Priority.HEAVY)) for _ in range(5)]
        await asyncio.sleep(0)
        assert [c for c, _ in granted] == ["backfill"] * 3  # the burst, less the fast reserve
        assert budget.deferred_reason is not None
        assert "backfill" in budget.deferred_reason
        fast = asyncio.create_task(ask(FAST_PATH, Priority.FAST))
        for _ in range(5):
            await asyncio.sleep(0)
        for _ in range(100):
            clock.advance(100)
            for _ in range(5):
                await asyncio.sleep(0)
        await asyncio.gather(*heavy, fast)
        # The fast path takes a reserved token at once although it asked last; heavy work gets
        # one token every 2 s once the reserve is full again.
        assert [c for c, _ in granted][3] == FAST_PATH
        # (the fake clock moves in 100 ms steps, so a grant lands within a step or two)
        times = [t - T0 for _, t in granted]
        assert times[:4] == [0, 0, 0, 0]
        for got, expected in zip(times[4:], (4_000, 6_000), strict=True):
            assert expected <= got <= expected + 300
        assert budget.requests_by_caller == {"backfill": 5, FAST_PATH: 1}
        assert budget.deferred_reason is None

    asyncio.run(asyncio.wait_for(scenario(), timeout=10))


async def _inline(work: Callable[[], None]) -> None:
    work()


def test_large_backfill_is_throttled_while_the_fast_path_keeps_its_bound(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    calendars = {"EURUSD": always_open.default}

    async def scenario() -> tuple[int, list[int], dict[str, int]]:
        now = T0 + 12 * DAY_MS
        clock = ManualClock(now)
        broker = SimBroker(TickGenerator(3, calendars, 5), ["EURUSD"], clock, BarSpec(), calendars)
        budget = HistoryBudget(
            clock, BudgetConfig(requests_per_min=30, burst=30, max_chunk_minutes=240)
        )
        store = JsonlStore(tmp_path / "ssot")
        store.open()
        pipeline = Pipeline(
            history=broker.history_1m,
            store=store,
            calendars=calendars,
            timeframes=(Timeframe.M1, Timeframe.H1),
            spec=BarSpec(),
            rails=TickRails(frozenset({"EURUSD"})),
            sink=CountingSink(),
            start_ms={"EURUSD": now - 2 * MINUTE_MS},
            safety_delay_ms=2_000,
            max_chunk_minutes=240,
            budget=budget,
            offload=_inline,  # fake time moves by loop turns: no fsync in a worker thread
        )
        fetched_at: list[int] = []  # fake time of each chunk's end (the derive tail is apart)
        backfill = asyncio.create_task(
            pipeline.fetch_range(
                "EURUSD",
                T0,
                T0 + 10 * DAY_MS,
                caller="backfill",
                now_ms=now,
                progress=lambda _done, _total: fetched_at.append(clock.now_ms()),
            )
        )
        fast_delays: list[int] = []

        async def fast_path_every_minute() -> None:
            while not backfill.done():
                due = clock.now_ms()
                await pipeline.advance(due)
                fast_delays.append(clock.now_ms() - due)
                await clock.sleep_until(due + MINUTE_MS)

        ticker = asyncio.create_task(fast_path_every_minute())
        while not backfill.done():
            clock.advance(250)
            for _ in range(5):
                await asyncio.sleep(0)
        result = await backfill
        ticker.cancel()
        store.close()
        return (
            fetched_at[-1] - now,
            fast_delays,
            dict(budget.requests_by_caller) | {"bars": result.bars_fetched},
        )

    took_ms, fast_delays, counts = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    chunks = 10 * DAY_MS // (240 * MINUTE_MS)
    assert counts["backfill"] == chunks == 60
    assert counts["bars"] > 10 * 1440 * 0.8  # a thin sim (5 ticks/min) leaves some minutes quiet
    # 30 at once, then one every 2 s of (fake) time: about a minute for the other 30.
    assert 58_000 <= took_ms <= 70_000
    # The fast path asked every fake minute and never waited for a token (the reserve).
    assert counts[FAST_PATH] >= 1
    assert max(fast_delays) == 0
    print(
        f"\nbackfill of 60 chunks took {took_ms / 1000:.1f} s fake time; fast path max "
        f"delay {max(fast_delays)} ms"
    )
    assert isinstance(OhlcvEvent, type)
