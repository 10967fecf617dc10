"""Commands against history answers that end early (issue 11, point 1).

The reported case: a half-hour answer to a one-hour backfill became 30 final and 30 quiet
minutes, and the 1h bar was derived from half an hour and published as final. Now an answer
that ends early is asked again from where it ended; what the broker has not provably passed
stays missing, and the 1h bar waits for it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fxconnector.core.builders.derive import derive
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import HOUR_MS, MINUTE_MS, Timeframe
from fxconnector.core.validation.ticks import TickRails
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.ingest.broker.port import HistoryAnswer
from fxconnector.runtime.ingest.broker.sim.broker import SimBroker
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator
from fxconnector.runtime.ingest.commands.handlers import CommandContext, RepairCaps, audit
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.sinks import RecordingSink

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z
TFS = (Timeframe.M1, Timeframe.H1)


class Truncating:
    """The sim's history, each answer cut to its first `cap` bars (as a quotes limit does), or
    (lagging) to minutes before `lag_until`; like FXCM, no completeness signal."""

    def __init__(self, broker: SimBroker) -> None:
        self.broker = broker
        self.cap: int | None = None
        self.lag_until: int | None = None
        self.calls: list[tuple[int, int]] = []

    async def __call__(self, symbol: str, from_ms: int, to_ms: int) -> HistoryAnswer:
        self.calls.append((from_ms, to_ms))
        bars = (await self.broker.history_1m(symbol, from_ms, to_ms)).bars
        if self.cap is not None:
            bars = bars[: self.cap]
        if self.lag_until is not None:
            bars = [b for b in bars if b.open_ms < self.lag_until]
        return HistoryAnswer(bars)


def setup(
    tmp_path: Path, profile: CalendarProfile
) -> tuple[CommandContext, Truncating, RecordingSink]:
    calendars = {"EURUSD": profile.default}
    clock = ManualClock(T0 + 3 * HOUR_MS)
    generator = TickGenerator(5, calendars, 30)
    history = Truncating(SimBroker(generator, ["EURUSD"], clock, BarSpec(), calendars))
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
        start_ms={"EURUSD": T0 + 3 * HOUR_MS},
    )
    return CommandContext(pipeline, store, sink, calendars, TFS, RepairCaps()), history, sink


def same(a: OhlcvEvent, b: OhlcvEvent) -> bool:
    fields = ("open_ms", "open", "high", "low", "close", "volume", "tick_count", "source")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


def hour_of_truth(history: Truncating) -> list[OhlcvEvent]:
    answer = asyncio.run(history.broker.history_1m("EURUSD", T0, T0 + HOUR_MS))
    assert len(answer.bars) == 60
    return answer.bars


def test_an_answer_that_ends_early_is_asked_again_from_where_it_ended(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    ctx, history, sink = setup(tmp_path, always_open)
    history.cap = 20
    now = T0 + 3 * HOUR_MS
    result = asyncio.run(
        ctx.pipeline.fetch_range("EURUSD", T0, T0 + HOUR_MS, caller="backfill", now_ms=now)
    )
    assert result.pending == []
    assert history.calls == [
        (T0, T0 + HOUR_MS),
        (T0 + 20 * MINUTE_MS, T0 + HOUR_MS),
        (T0 + 40 * MINUTE_MS, T0 + HOUR_MS),
    ]
    coverage = asyncio.run(audit(ctx, "EURUSD", T0, T0 + HOUR_MS))["coverage"]
    assert (coverage["final"], coverage["quiet"], coverage["missing"]) == (60, 0, 0)
    [hour] = [e for e in sink.finals_seen if e.tf is Timeframe.H1]
    assert same(hour, derive(hour_of_truth(history), Timeframe.H1, ctx.calendars["EURUSD"])[0])


def test_minutes_the_broker_has_not_passed_stay_missing_and_the_hour_waits(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    ctx, history, sink = setup(tmp_path, always_open)
    history.lag_until = T0 + 30 * MINUTE_MS  # its history has nothing after 00:30 yet
    now = T0 + 3 * HOUR_MS
    result = asyncio.run(
        ctx.pipeline.fetch_range("EURUSD", T0, T0 + HOUR_MS, caller="backfill", now_ms=now)
    )
    assert result.pending == [(T0 + 30 * MINUTE_MS, T0 + HOUR_MS)]
    before = asyncio.run(audit(ctx, "EURUSD", T0, T0 + HOUR_MS))
    coverage = before["coverage"]
    assert (coverage["final"], coverage["quiet"], coverage["missing"]) == (30, 0, 30)
    assert before["missing_ranges_ms"] == [(T0 + 30 * MINUTE_MS, T0 + HOUR_MS)]
    assert not [e for e in sink.finals_seen if e.tf is Timeframe.H1]  # never half an hour as final
    # The broker catches up; asking again completes the hour, now derived from 60 minutes.
    history.lag_until = None
    asyncio.run(
        ctx.pipeline.fetch_range("EURUSD", T0, T0 + HOUR_MS, caller="tail_guard", now_ms=now)
    )
    coverage = asyncio.run(audit(ctx, "EURUSD", T0, T0 + HOUR_MS))["coverage"]
    assert (coverage["final"], coverage["quiet"], coverage["missing"]) == (60, 0, 0)
    [hour] = [e for e in sink.finals_seen if e.tf is Timeframe.H1]
    assert same(hour, derive(hour_of_truth(history), Timeframe.H1, ctx.calendars["EURUSD"])[0])
