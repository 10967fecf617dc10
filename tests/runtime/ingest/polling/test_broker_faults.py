"""A simulated trading day against a broker that misbehaves on purpose (issue 11, "done when").

The broker is the real SimBroker (its history is exactly the aggregation of its own ticks) behind
`FaultBroker`, which injects, from a seed and deterministically: failing history calls, slow
calls (the clock moves while the answer is prepared), partial answers (truncated at the end),
bad candles (refused by the adapter, or slipping through it and refused by the pipeline), empty
answers (its history lagging), a stretch in which every history answer is empty (the broker's
history stalls), and a tick outage. Like FXCM, it never gives a completeness signal.

The live pipeline runs the day on a ManualClock against a real JSONL store, and then:
- every final 1m revision ever stored or published equals the broker's own candle;
- no minute that had a candle is quiet (it is final, or missing: never wrong, never quiet);
- every higher-timeframe final ever published equals the aggregation of the broker's candles
  of its bucket (so none was derived from a bucket with a missing minute);
- the stalled history shows in `stalled()` while it lasts and clears after;
- tail_guard's repair (faults off) then fills every missing minute, and the day is complete.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from pathlib import Path

import msgspec
import numpy as np
import pytest

from fxconnector.core.builders.derive import derive
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.coverage import MinuteState, classify
from fxconnector.core.errors import BrokerDisconnected
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.command import Command
from fxconnector.core.time_geom import HOUR_MS, MINUTE_MS, Timeframe, to_ms
from fxconnector.core.validation.ticks import TickRails
from fxconnector.core.validation.validator import validate_command
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.ingest.broker.port import HistoryAnswer, RejectedCandle
from fxconnector.runtime.ingest.broker.sim.broker import SimBroker
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator
from fxconnector.runtime.ingest.commands.handlers import CommandContext, RepairCaps, execute
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.conftest import calendar_profile
from tests.sinks import RecordingSink

SYMBOLS = ("EURUSD", "GBPUSD")
TFS = (Timeframe.M1, Timeframe.M5, Timeframe.M15, Timeframe.H1, Timeframe.H4, Timeframe.D1)
#: The trading day of Wednesday 2024-03-06 (winter: it starts 22:00 UTC the day before).
DAY_START = to_ms(dt.datetime(2024, 3, 5, 22, tzinfo=dt.UTC))
DAY_END = DAY_START + 24 * HOUR_MS
RUN_END = DAY_END + 20 * MINUTE_MS
STEP_MS = 10_000
#: The broker's history answers nothing at all here (it stalls).
HISTORY_STALL = (DAY_START + 6 * HOUR_MS, DAY_START + 6 * HOUR_MS + 25 * MINUTE_MS)
#: GBPUSD's tick stream is down here (the pipeline is told, as the lifecycle does).
TICK_OUTAGE = (DAY_START + 14 * HOUR_MS, DAY_START + 14 * HOUR_MS + 12 * MINUTE_MS)
STALL_AFTER_MS = 10 * MINUTE_MS


class FaultBroker:
    """The sim broker's history with seeded faults in front of it."""

    def __init__(self, sim: SimBroker, clock: ManualClock, seed: int) -> None:
        self.sim = sim
        self.clock = clock
        self.random = random.Random(seed)
        self.enabled = True
        self.injected: dict[str, int] = dict.fromkeys(
            ("failed", "slow", "partial", "bad_rejected", "bad_slipped", "empty", "stalled"), 0
        )

    async def history_1m(self, symbol: str, from_ms: int, to_ms: int) -> HistoryAnswer:
        if not self.enabled:
            answer = await self.sim.history_1m(symbol, from_ms, to_ms)
            return HistoryAnswer(answer.bars)  # no completeness signal, like FXCM
        roll = self.random.random()
        if roll < 0.3:
            self.injected["slow"] += 1
            self.clock.advance(self.random.randrange(1_000, 25_000))
        now = self.clock.now_ms()
        if HISTORY_STALL[0] <= now < HISTORY_STALL[1]:
            self.injected["stalled"] += 1
            return HistoryAnswer([])
        roll = self.random.random()
        if roll < 0.08:
            self.injected["failed"] += 1
            raise BrokerDisconnected("fault: QuotesManager error ... errorCode=28")
        bars = list((await self.sim.history_1m(symbol, from_ms, to_ms)).bars)
        if roll < 0.16:
            self.injected["empty"] += 1
            return HistoryAnswer([])
        rejected: list[RejectedCandle] = []
        if bars and roll < 0.30:
            self.injected["partial"] += 1
            bars = bars[: self.random.randrange(len(bars))]
        elif bars and roll < 0.36:
            self.injected["bad_rejected"] += 1
            index = self.random.randrange(len(bars))
            rejected.append(RejectedCandle(bars.pop(index).open_ms, "price_not_positive", "fault"))
        elif bars and roll < 0.42:
            self.injected["bad_slipped"] += 1
            index = self.random.randrange(len(bars))
            bad = bars[index]
            bars[index] = msgspec.structs.replace(bad, high=bad.low * 0.5)
        return HistoryAnswer(bars, rejected)


def key(bar: OhlcvEvent) -> tuple[float, float, float, float, float, int]:
    return (bar.open, bar.high, bar.low, bar.close, float(bar.volume), bar.tick_count)


async def live_day(pipeline: Pipeline, generator: TickGenerator, clock: ManualClock) -> list[int]:
    """Feed the day's ticks and advance on the clock; return when a stall was reported."""
    batches = {s: generator.between(s, DAY_START, RUN_END) for s in SYMBOLS}
    cursors = dict.fromkeys(SYMBOLS, 0)
    stalled_at: list[int] = []
    outage_noted = False
    for step_end in range(DAY_START + STEP_MS, RUN_END + 1, STEP_MS):
        for symbol, batch in batches.items():
            stop = int(np.searchsorted(batch.ts_ms, step_end, side="left"))
            start = cursors[symbol]
            cursors[symbol] = stop
            for tick in batch.slice(start, stop).ticks():
                down = TICK_OUTAGE[0] <= tick.ts_ms < TICK_OUTAGE[1]
                if symbol == "GBPUSD" and down:
                    continue
                pipeline.on_tick(tick, max(step_end, clock.now_ms()))
        if not outage_noted and step_end >= TICK_OUTAGE[1]:
            pipeline.note_outage(TICK_OUTAGE[0] - MINUTE_MS, TICK_OUTAGE[1] + MINUTE_MS)
            outage_noted = True
        clock.set(max(clock.now_ms(), step_end))
        await pipeline.advance(clock.now_ms())
        if pipeline.stalled(clock.now_ms()):
            stalled_at.append(clock.now_ms())
    return stalled_at


def check_against_truth(
    store: JsonlStore,
    sink: RecordingSink,
    truth: dict[str, dict[int, OhlcvEvent]],
    calendars: dict[str, TradingCalendar],
) -> dict[str, int]:
    """Assert the three invariants; return the missing-minute count per symbol."""
    missing: dict[str, int] = {}
    published_1m = [e for e in sink.finals_seen if e.tf is Timeframe.M1]
    for event in published_1m:
        assert key(event) == key(truth[event.symbol][event.open_ms]), event
    for symbol in SYMBOLS:
        calendar = calendars[symbol]
        candles = truth[symbol]
        for bar in store.bars(symbol, Timeframe.M1, DAY_START, DAY_END):
            for revision in store.revisions(symbol, Timeframe.M1, bar.open_ms):
                assert key(revision.event()) == key(candles[bar.open_ms]), revision
        finals = [b.open_ms for b in store.bars(symbol, Timeframe.M1, DAY_START, DAY_END)]
        states = classify(
            DAY_START,
            DAY_END,
            calendar,
            np.asarray(finals, dtype=np.int64),
            store.fetched_intervals(symbol, DAY_START, DAY_END),
        )
        minutes = np.arange(DAY_START, DAY_END, MINUTE_MS, dtype=np.int64)
        had_candle = np.isin(minutes, np.asarray(sorted(candles), dtype=np.int64))
        quiet_with_candle = minutes[had_candle & (states == MinuteState.QUIET)]
        assert quiet_with_candle.size == 0, [int(m) for m in quiet_with_candle[:5]]
        missing[symbol] = int(np.sum(states == MinuteState.MISSING))
        # Every derived final ever published equals the aggregation of the broker's candles.
        for event in sink.finals_seen:
            if event.symbol != symbol or event.tf is Timeframe.M1:
                continue
            inside = [c for m, c in sorted(candles.items()) if event.open_ms <= m < event.close_ms]
            [expected] = derive(inside, event.tf, calendar)
            assert key(event) == key(expected), (event.tf, event.open_ms)
    return missing


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 2024])
def test_a_day_against_a_faulty_broker_gives_only_true_finals(tmp_path: Path, seed: int) -> None:
    calendars = {s: calendar_profile("fx_ny").for_symbol(s) for s in SYMBOLS}
    generator = TickGenerator(seed, calendars, ticks_per_minute=20)
    clock = ManualClock(DAY_START)
    sim = SimBroker(generator, SYMBOLS, clock, BarSpec(), calendars)
    broker = FaultBroker(sim, clock, seed)
    store = JsonlStore(tmp_path / "ssot")
    store.open()
    sink = RecordingSink()
    pipeline = Pipeline(
        history=broker.history_1m,
        store=store,
        calendars=calendars,
        timeframes=TFS,
        spec=BarSpec(),
        rails=TickRails(frozenset(SYMBOLS)),
        sink=sink,
        start_ms=dict.fromkeys(SYMBOLS, DAY_START),
        safety_delay_ms=2_000,
        stall_after_ms=STALL_AFTER_MS,
    )

    async def scenario() -> tuple[list[int], dict[str, dict[int, OhlcvEvent]]]:
        stalled_at = await live_day(pipeline, generator, clock)
        truth = {
            s: {
                b.open_ms: b
                for b in (await sim.history_1m(s, DAY_START - 2 * HOUR_MS, RUN_END)).bars
            }
            for s in SYMBOLS
        }
        return stalled_at, truth

    stalled_at, truth = asyncio.run(scenario())
    assert all(count > 0 for count in broker.injected.values()), broker.injected
    stats = pipeline.stats
    assert stats.history_failures > 0
    assert set(stats.candles_refused) == {"price_not_positive", "bar_contract"}
    assert {e.code for e in stats.errors} >= {"history.bad_bar", "history.failed"}
    # The stalled history was reported while it lasted (never silence), and only then.
    assert stalled_at, "the history stall was never reported"
    assert HISTORY_STALL[0] < min(stalled_at)
    assert any(HISTORY_STALL[0] + STALL_AFTER_MS <= t < HISTORY_STALL[1] for t in stalled_at)
    assert max(stalled_at) < HISTORY_STALL[1] + 5 * MINUTE_MS
    missing = check_against_truth(store, sink, truth, calendars)
    # Finals were published during the day, HTF ones too.
    assert {e.tf for e in sink.finals_seen} >= {Timeframe.M1, Timeframe.M5, Timeframe.H1}

    # Repair (faults off): everything missing is fetched and proven; the day completes.
    broker.enabled = False
    now = clock.now_ms()
    ctx = CommandContext(pipeline, store, sink, calendars, TFS, RepairCaps(repair_window_hours=26))
    report = asyncio.run(
        execute(
            command(
                f'{{"cmd":"tail_guard","req_id":"r1","ts":{now},"args":'
                f'{{"symbols":["EURUSD","GBPUSD"],"window_hours":25,"repair":true}}}}'
            ),
            ctx,
            now,
        )
    )
    assert sum(missing.values()) > 0, "the faults left nothing to repair"
    finals_1m = sum(1 for e in sink.finals_seen if e.tf is Timeframe.M1)
    finals_htf = sum(1 for e in sink.finals_seen if e.tf is not Timeframe.M1)
    print(
        f"\nseed {seed}: injected {broker.injected}; history requests {stats.history_requests}, "
        f"failures {stats.history_failures}, refused {dict(stats.candles_refused)}; published "
        f"1m {finals_1m}, higher tf {finals_htf}; missing before repair {missing}; stall "
        f"reported {len(stalled_at)} times"
    )
    after = check_against_truth(store, sink, truth, calendars)
    assert after == dict.fromkeys(SYMBOLS, 0), report
    for symbol in SYMBOLS:
        [day] = list(store.bars(symbol, Timeframe.D1, DAY_START, DAY_END))
        minutes = [truth[symbol][m] for m in sorted(truth[symbol]) if DAY_START <= m < DAY_END]
        [expected] = derive(minutes, Timeframe.D1, calendars[symbol])
        assert key(day.event()) == key(expected)
    store.close()


def command(text: str) -> Command:
    checked = validate_command(text)
    assert checked.value is not None, checked.problems
    return checked.value
