"""The pipeline against a real store: close detection, faults, revisions, NoMix."""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.errors import BrokerDisconnected
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.tick import Tick, TickBatch
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.core.validation.ticks import TickRails, check_tick
from fxconnector.runtime.ingest.broker.replay.broker import ReplayBroker
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.conftest import calendar_profile

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z, Monday
TFS = (Timeframe.M1, Timeframe.M5, Timeframe.H1)


class RecordingSink:
    def __init__(self) -> None:
        self.log: list[OhlcvEvent] = []

    def finals(self, events: Sequence[OhlcvEvent]) -> None:
        self.log.extend(events)

    def previews(self, events: Sequence[OhlcvEvent]) -> None:
        self.log.extend(events)


def ticks(minutes: int, per_minute: int = 4) -> TickBatch:
    ts = np.asarray(
        [T0 + m * MINUTE_MS + k * 10_000 for m in range(minutes) for k in range(per_minute)],
        dtype=np.int64,
    )
    bid = 1.1 + (np.arange(ts.size) % 7) * 1e-5
    return TickBatch("EURUSD", ts, np.round(bid, 5), np.round(bid + 2e-5, 5))


class History:
    """The replay broker's history with scripted faults in front of it."""

    def __init__(self, broker: ReplayBroker) -> None:
        self.broker = broker
        self.fail_next = 0
        self.hide: set[int] = set()  # minutes whose bar the broker "does not have yet"
        self.calls: list[tuple[int, int]] = []
        self.override: dict[int, OhlcvEvent] = {}

    async def __call__(self, symbol: str, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
        self.calls.append((from_ms, to_ms))
        if self.fail_next:
            self.fail_next -= 1
            raise BrokerDisconnected("history connection reset")
        bars = (await self.broker.history_1m(symbol, from_ms, to_ms)).bars
        return [self.override.get(b.open_ms, b) for b in bars if b.open_ms not in self.hide]


def make(
    tmp_path: Path, profile: CalendarProfile, batch: TickBatch
) -> tuple[Pipeline, History, RecordingSink, JsonlStore]:
    store = JsonlStore(tmp_path / "ssot")
    store.open()
    calendar = profile.default
    history = History(ReplayBroker(batch, BarSpec(), calendar))
    sink = RecordingSink()
    pipeline = Pipeline(
        history=history,
        store=store,
        calendars={"EURUSD": calendar},
        timeframes=TFS,
        spec=BarSpec(),
        rails=TickRails(frozenset({"EURUSD"})),
        sink=sink,
        start_ms={"EURUSD": T0},
        safety_delay_ms=2_000,
        retry_base_ms=1_000,
    )
    return pipeline, history, sink, store


async def play(pipeline: Pipeline, batch: TickBatch, until_ms: int) -> None:
    for tick in batch.ticks():
        pipeline.on_tick(tick, tick.ts_ms)
        await pipeline.advance(tick.ts_ms)
    for now in range(int(batch.ts_ms.max()), until_ms, 1_000):
        await pipeline.advance(now)


def test_finals_follow_minutes_after_the_safety_delay(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    batch = ticks(10)
    pipeline, history, sink, store = make(tmp_path, always_open, batch)
    asyncio.run(play(pipeline, batch, T0 + 10 * MINUTE_MS + 1_999))
    finals = [e for e in sink.log if e.complete and e.tf is Timeframe.M1]
    assert [e.open_ms for e in finals] == [T0 + m * MINUTE_MS for m in range(9)]  # the 10th waits
    asyncio.run(pipeline.advance(T0 + 10 * MINUTE_MS + 2_000))
    finals = [e for e in sink.log if e.complete and e.tf is Timeframe.M1]
    assert len(finals) == 10
    assert all(e.source is Source.HISTORY for e in finals)
    five = [e for e in sink.log if e.complete and e.tf is Timeframe.M5]
    assert [e.open_ms for e in five] == [T0, T0 + 5 * MINUTE_MS]
    assert all(e.source is Source.DERIVED and e.event_ts == e.close_ms for e in five)
    # No history call ever asked for a minute that had not ended plus the delay.
    assert all(to <= T0 + 10 * MINUTE_MS for _, to in history.calls)
    assert len(list(store.bars("EURUSD", Timeframe.M1))) == 10
    store.close()


def test_no_preview_of_a_key_after_its_final(tmp_path: Path, always_open: CalendarProfile) -> None:
    batch = ticks(130)
    pipeline, _, sink, store = make(tmp_path, always_open, batch)
    asyncio.run(play(pipeline, batch, T0 + 131 * MINUTE_MS + 3_000))
    finalized: set[tuple[str, Timeframe, int]] = set()
    for event in sink.log:
        key = (event.symbol, event.tf, event.open_ms)
        if event.complete:
            finalized.add(key)
        else:
            assert key not in finalized, f"preview after final for {key}"
    hours = [e for e in sink.log if e.complete and e.tf is Timeframe.H1]
    assert [e.open_ms for e in hours] == [T0, T0 + 3_600_000]
    store.close()


def test_failed_history_is_retried_with_backoff(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    batch = ticks(3)
    pipeline, history, sink, store = make(tmp_path, always_open, batch)
    history.fail_next = 2
    asyncio.run(play(pipeline, batch, T0 + 3 * MINUTE_MS + 10_000))
    assert pipeline.stats.history_failures == 2
    assert [e.code for e in pipeline.stats.errors] == ["history.failed", "history.failed"]
    finals = [e for e in sink.log if e.complete and e.tf is Timeframe.M1]
    assert [e.open_ms for e in finals] == [T0, T0 + MINUTE_MS, T0 + 2 * MINUTE_MS]
    store.close()


def test_empty_history_for_a_ticked_minute_is_retried_then_left_missing(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    batch = ticks(3)
    pipeline, history, sink, store = make(tmp_path, always_open, batch)
    history.hide = {T0 + MINUTE_MS}

    async def until(ts_ms: int) -> None:
        for tick in batch.ticks():
            if tick.ts_ms <= ts_ms:
                pipeline.on_tick(tick, tick.ts_ms)
                await pipeline.advance(tick.ts_ms)

    # At 02:10 minute 1 (01:00-01:59, 4 ticks seen) is fetched and comes back empty.
    asyncio.run(until(T0 + 2 * MINUTE_MS + 10_000))
    assert history.calls[-1] == (T0 + MINUTE_MS, T0 + 2 * MINUTE_MS)
    assert pipeline.stats.empty_history_retries == 0
    assert store.fetched_intervals("EURUSD", T0, T0 + 2 * MINUTE_MS) == [(T0, T0 + MINUTE_MS)]
    # The broker catches up; the retry one second later (retry_base_ms) finds the bar.
    history.hide = set()
    asyncio.run(pipeline.advance(T0 + 2 * MINUTE_MS + 11_000))
    assert pipeline.stats.empty_history_retries == 1
    assert history.calls[-1] == (T0 + MINUTE_MS, T0 + 2 * MINUTE_MS)
    finals = sorted(e.open_ms for e in sink.log if e.complete and e.tf is Timeframe.M1)
    assert finals == [T0, T0 + MINUTE_MS]
    # A minute whose bar never comes is left missing (not quiet) and reported.
    batch2 = ticks(6)
    pipeline2, history2, _, store2 = make(tmp_path / "b", always_open, batch2)
    history2.hide = {T0 + 4 * MINUTE_MS}
    asyncio.run(play(pipeline2, batch2, T0 + 6 * MINUTE_MS + 200_000))
    assert [e.code for e in pipeline2.stats.errors] == ["history.no_bar"]
    fetched = store2.fetched_intervals("EURUSD", T0, T0 + 6 * MINUTE_MS)
    assert fetched == [(T0, T0 + 4 * MINUTE_MS), (T0 + 5 * MINUTE_MS, T0 + 6 * MINUTE_MS)]
    five = [b.open_ms for b in store2.bars("EURUSD", Timeframe.M5)]
    assert five == []  # the 5m bucket with the missing minute is not derived
    store.close()
    store2.close()


def test_a_corrected_minute_becomes_a_revision_and_is_rederived(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    batch = ticks(5)
    pipeline, history, sink, store = make(tmp_path, always_open, batch)
    asyncio.run(play(pipeline, batch, T0 + 5 * MINUTE_MS + 3_000))
    assert [b.rev for b in store.bars("EURUSD", Timeframe.M5)] == [0]
    first = store.latest("EURUSD", Timeframe.M1, T0 + 2 * MINUTE_MS)
    assert first is not None
    corrected = msgspec.structs.replace(first.event(), high=first.high + 0.001)
    history.override[corrected.open_ms] = corrected
    # A re-fetch of the range (as a backfill would do) brings the correction in.
    pipeline._progress["EURUSD"].next_minute_ms = T0
    asyncio.run(pipeline.advance(T0 + 5 * MINUTE_MS + 4_000))
    revs = store.revisions("EURUSD", Timeframe.M1, T0 + 2 * MINUTE_MS)
    assert [(r.rev, r.reason) for r in revs] == [(0, ""), (1, "broker correction")]
    five = store.revisions("EURUSD", Timeframe.M5, T0)
    assert [r.rev for r in five] == [0, 1]
    assert five[1].high == pytest.approx(first.high + 0.001)
    published = [e for e in sink.log if e.complete and e.rev == 1]
    assert {(e.tf, e.open_ms) for e in published} == {
        (Timeframe.M1, T0 + 2 * MINUTE_MS),
        (Timeframe.M5, T0),
    }
    store.close()


def test_history_bars_that_break_the_contract_are_refused(
    tmp_path: Path, fx_ny: CalendarProfile
) -> None:
    saturday = 1_549_670_400_000  # 2019-02-09T00:00:00Z, closed
    batch = ticks(2)
    pipeline, history, _, store = make(tmp_path, fx_ny, batch)
    good = asyncio.run(history.broker.history_1m("EURUSD", T0, T0 + MINUTE_MS)).bars[0]
    history.override[T0 + MINUTE_MS] = msgspec.structs.replace(
        good, open_ms=saturday, close_ms=saturday + 59_999, event_ts=saturday + 59_999
    )
    asyncio.run(play(pipeline, batch, T0 + 2 * MINUTE_MS + 3_000))
    assert pipeline.stats.history_bars_refused == 1
    assert "history.bad_bar" in [e.code for e in pipeline.stats.errors]
    assert store.latest("EURUSD", Timeframe.M1, saturday) is None
    store.close()


prices = st.one_of(
    st.floats(min_value=0.5, max_value=2.0),
    st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf]),
)


@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["EURUSD", "GBPUSD"]),
            prices,
            prices,
            st.integers(min_value=-5_000, max_value=3 * 86_400_000),  # step; Sat/Sun are closed
        ),
        min_size=1,
        max_size=40,
    )
)
def test_fast_path_agrees_with_check_tick(rows: list[tuple[str, float, float, int]]) -> None:
    calendar = calendar_profile("fx_ny").default
    rails = TickRails(frozenset({"EURUSD"}), max_spread_inversion=0.0001)
    with tempfile.TemporaryDirectory() as tmp:
        store = JsonlStore(Path(tmp))
        store.open()
        pipeline = Pipeline(
            history=_nothing,
            store=store,
            calendars={"EURUSD": calendar},
            timeframes=TFS,
            spec=BarSpec(),
            rails=rails,
            sink=RecordingSink(),
            start_ms={"EURUSD": T0},
        )
        ts = T0 + 3 * 86_400_000  # Thursday
        now = ts
        for symbol, bid, ask, step in rows:
            ts += abs(step)
            expected = check_tick(rails, symbol, bid, ask, ts, now, calendar.is_open(ts))
            before = dict(pipeline.stats.rejected)
            applied = pipeline.on_tick(Tick(symbol, bid, ask, ts), now)
            after = dict(pipeline.stats.rejected)
            if expected is None:
                assert applied
                assert after == before
            else:
                assert not applied
                assert after[expected.value] == before.get(expected.value, 0) + 1
            now = ts - 10_000 if step % 3 == 0 else ts  # sometimes the tick is from the future
        store.close()


async def _nothing(symbol: str, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
    return []


def test_minutes_of_a_broker_outage_are_not_quiet(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    # Ticks in minutes 0-1 and 6; minutes 2-3 the stream was down, 4-5 had no ticks.
    whole = ticks(7)
    keep = (whole.ts_ms < T0 + 2 * MINUTE_MS) | (whole.ts_ms >= T0 + 6 * MINUTE_MS)
    batch = TickBatch("EURUSD", whole.ts_ms[keep], whole.bid[keep], whole.ask[keep])
    pipeline, _history, _, store = make(tmp_path, always_open, batch)
    pipeline.note_outage(T0 + 2 * MINUTE_MS, T0 + 4 * MINUTE_MS)
    asyncio.run(play(pipeline, batch, T0 + 7 * MINUTE_MS + 300_000))
    fetched = store.fetched_intervals("EURUSD", T0, T0 + 7 * MINUTE_MS)
    # Minutes 2 and 3 (the outage) stay missing; 4 and 5 (no outage, no ticks, and the broker
    # has the later bar of minute 6) are quiet.
    assert fetched == [(T0, T0 + 2 * MINUTE_MS), (T0 + 4 * MINUTE_MS, T0 + 7 * MINUTE_MS)]
    assert [e.code for e in pipeline.stats.errors] == ["history.no_bar", "history.no_bar"]
    store.close()


def test_empty_minutes_before_the_weekend_wait_for_the_next_bar_asking_once(
    tmp_path: Path, fx_ny: CalendarProfile
) -> None:
    friday_close = 1_549_663_200_000  # 2019-02-08T22:00:00Z, the weekly close (winter)
    sunday_open = friday_close + 48 * 3_600_000
    last_ticked = friday_close - 3 * MINUTE_MS  # 21:57; 21:58 and 21:59 have no tick
    minutes = [friday_close - 10 * MINUTE_MS + m * MINUTE_MS for m in range(8)]
    minutes += [sunday_open, sunday_open + MINUTE_MS]
    ts = np.asarray([m + k * 10_000 for m in minutes for k in range(4)], dtype=np.int64)
    bid = np.round(1.1 + (np.arange(ts.size) % 7) * 1e-5, 5)
    batch = TickBatch("EURUSD", ts, bid, np.round(bid + 2e-5, 5))
    store = JsonlStore(tmp_path / "ssot")
    store.open()
    calendar = fx_ny.for_symbol("EURUSD")
    history = History(ReplayBroker(batch, BarSpec(), calendar))
    pipeline = Pipeline(
        history=history,
        store=store,
        calendars={"EURUSD": calendar},
        timeframes=TFS,
        spec=BarSpec(),
        rails=TickRails(frozenset({"EURUSD"})),
        sink=RecordingSink(),
        start_ms={"EURUSD": minutes[0]},
    )
    quiet_tail = (last_ticked + MINUTE_MS, friday_close)

    async def run() -> None:
        ticks = iter(batch.ticks())
        pending = next(ticks, None)
        for now in range(minutes[0], sunday_open + 5 * MINUTE_MS, 30_000):
            while pending is not None and pending.ts_ms <= now:
                pipeline.on_tick(pending, now)
                pending = next(ticks, None)
            await pipeline.advance(now)
            if now == sunday_open - MINUTE_MS:
                # all weekend: the two empty minutes were asked once and are not quiet
                asked = [c for c in history.calls if c[0] <= quiet_tail[0] < c[1]]
                assert len(asked) <= 2, asked
                assert store.fetched_intervals("EURUSD", *quiet_tail) == []

    asyncio.run(run())
    # Sunday's first bar proves them: quiet, and the week's last 5 minutes are derived.
    assert store.fetched_intervals("EURUSD", *quiet_tail) == [quiet_tail]
    fives = [b.open_ms for b in store.bars("EURUSD", Timeframe.M5)]
    assert friday_close - 5 * MINUTE_MS in fives
    store.close()
