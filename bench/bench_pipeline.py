"""Pipeline throughput on real data, each figure next to a baseline run on the same arrays.

- live path: tick validation + preview of every timeframe (Pipeline.on_tick) vs a bare loop
  over the same Tick objects;
- the live path next to NautilusTrader's TimeBarAggregator (bench/peer_nautilus.py).
Replay end to end and 1m -> higher timeframes are in bench/bench_replay.py.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.ab import interleaved
from bench.data import shared_data
from bench.peer_nautilus import Bars, Peer, compare, peer, peer_bars
from bench.runner import Row
from fxconnector.config.calendars import load_calendar
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.tick import TickBatch
from fxconnector.core.time_geom import TIMEFRAMES, Timeframe, to_ms
from fxconnector.core.validation.ticks import TickRails
from fxconnector.runtime.ingest.broker.replay.readers import read_ticks
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.publish.sink import CountingSink, EventSink
from fxconnector.runtime.store.ssot_jsonl import JsonlStore

HIGHER = tuple(tf for tf in TIMEFRAMES if tf is not Timeframe.M1)
LIVE_TICKS = 400_000


def run() -> list[Row]:
    data = shared_data()
    if data is None:
        print("bench_pipeline: ../shared/data not found; set FXCONNECTOR_SHARED_DATA")
        return []
    now_ms = to_ms(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    profile = load_calendar("fx_ny", now_ms=now_ms)
    calendar = profile.for_symbol("GBPJPY")
    batch = read_ticks(data / "dukascopy", "GBPJPY", "dukascopy")
    return _live_path(batch, calendar)


def _pipeline(
    store: JsonlStore, calendar: object, timeframes: tuple[Timeframe, ...], sink: EventSink
) -> Pipeline:
    return Pipeline(
        history=_no_history,
        store=store,
        calendars={"GBPJPY": calendar},  # type: ignore[dict-item]
        timeframes=timeframes,
        spec=BarSpec(),
        rails=TickRails(frozenset({"GBPJPY"})),
        sink=sink,
        start_ms={"GBPJPY": 0},
    )


class _Recorder:
    """The closed previews of the live path, keyed like the peer's bars (untimed run only)."""

    def __init__(self) -> None:
        self.bars: Bars = {}

    def finals(self, events: Sequence[OhlcvEvent]) -> None:
        raise AssertionError("the live path publishes no final")

    def previews(self, events: Sequence[OhlcvEvent]) -> None:
        for e in events:
            self.bars[(e.tf, e.open_ms)] = (e.open, e.high, e.low, e.close)


def _live_path(batch: TickBatch, calendar: object) -> list[Row]:
    """Our live path (Pipeline.on_tick: validation + bar updates + closed previews to the sink)
    vs a bare loop, and vs NautilusTrader's TimeBarAggregator on the same ticks (1 tf, all)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = JsonlStore(Path(tmp))  # the live path stores nothing per tick
        store.open()
        try:
            return _live_rows(batch, calendar, store)
        finally:
            store.close()


def _live_rows(batch: TickBatch, calendar: object, store: JsonlStore) -> list[Row]:
    batch = batch.slice(0, LIVE_TICKS)
    ticks = batch.ticks()

    def ours(timeframes: tuple[Timeframe, ...]) -> Callable[[], None]:
        def subject() -> None:
            on_tick = _pipeline(store, calendar, timeframes, CountingSink()).on_tick
            for tick in ticks:
                on_tick(tick, tick.ts_ms)

        return subject

    def theirs(other: Peer, timeframes: tuple[Timeframe, ...], timers: bool) -> Callable[[], None]:
        return lambda: other.run(timeframes, None, timers)

    def bare() -> None:
        total = 0
        for tick in ticks:
            total += tick.ts_ms

    subject, baseline = interleaved(ours(TIMEFRAMES), bare, repeat=3)
    rows = [
        Row(
            f"live path, {len(TIMEFRAMES)} tfs ({subject.rates(len(ticks))})",
            len(ticks),
            "ticks",
            subject.median,
            "bare per-tick loop",
            baseline.median,
        )
    ]
    other = peer("GBP/JPY", batch.ts_ms, batch.bid, batch.ask)
    if isinstance(other, str):
        print(f"bench_pipeline: NautilusTrader peer row skipped: {other}")
        return rows
    for timeframes in ((Timeframe.M1,), TIMEFRAMES):
        recorder = _Recorder()
        on_tick = _pipeline(store, calendar, timeframes, recorder).on_tick
        for tick in ticks:
            on_tick(tick, tick.ts_ms)
        for timers in (True, False):
            mode = "timer" if timers else "batch"
            equal, different, skipped = compare(
                recorder.bars, peer_bars(other, timeframes, timers), batch.ts_ms, timers
            )
            print(
                f"bench_pipeline: live path vs nautilus_trader {other.version} ({mode} mode), "
                f"{len(timeframes)} tf(s): OHLC of {equal} closed bars equal, {different} "
                f"differ, {skipped} left out (a tick on a bucket boundary)"
            )
            if different:
                raise AssertionError(f"{different} bars differ from NautilusTrader's")
            subject, baseline = interleaved(
                ours(timeframes), theirs(other, timeframes, timers), repeat=3
            )
            rows.append(
                Row(
                    f"live path, {len(timeframes)} tf(s) ({subject.rates(len(ticks))})",
                    len(ticks),
                    "ticks",
                    subject.median,
                    f"nautilus {mode} ({baseline.rates(len(ticks))})",
                    baseline.median,
                )
            )
    return rows


async def _no_history(symbol: str, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
    return []
