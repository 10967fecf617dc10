"""Pipeline throughput on real data: the live path, tick validation + preview of every
timeframe (Pipeline.on_tick), next to a bare loop over the same Tick objects.

The replay (end to end) and 1m -> higher timeframes rows are in bench_replay.py.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from bench.data import shared_data
from bench.runner import Row, best_of
from fxconnector.config.calendars import load_calendar
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import TIMEFRAMES, Timeframe, to_ms
from fxconnector.core.validation.ticks import TickRails
from fxconnector.runtime.ingest.broker.replay.readers import read_ticks
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.publish.sink import CountingSink
from fxconnector.runtime.store.ssot_jsonl import JsonlStore

HIGHER = tuple(tf for tf in TIMEFRAMES if tf is not Timeframe.M1)


def run() -> list[Row]:
    data = shared_data()
    if data is None:
        print("bench_pipeline: ../shared/data not found; set FXCONNECTOR_SHARED_DATA")
        return []
    now_ms = to_ms(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    profile = load_calendar("fx_ny", now_ms=now_ms)
    calendar = profile.for_symbol("GBPJPY")
    batch = read_ticks(data / "dukascopy", "GBPJPY", "dukascopy")
    return [_live_path(batch, calendar)]


def _live_path(batch: object, calendar: object) -> Row:
    from fxconnector.core.model.tick import TickBatch

    assert isinstance(batch, TickBatch)
    ticks = batch.slice(0, 400_000).ticks()
    with tempfile.TemporaryDirectory() as tmp:
        store = JsonlStore(Path(tmp))
        store.open()

        def subject() -> None:
            pipeline = Pipeline(
                history=_no_history,
                store=store,
                calendars={"GBPJPY": calendar},  # type: ignore[dict-item]
                timeframes=TIMEFRAMES,
                spec=BarSpec(),
                rails=TickRails(frozenset({"GBPJPY"})),
                sink=CountingSink(),
                start_ms={"GBPJPY": 0},
            )
            on_tick = pipeline.on_tick
            for tick in ticks:
                on_tick(tick, tick.ts_ms)

        def baseline() -> None:
            total = 0
            for tick in ticks:
                total += tick.ts_ms

        seconds = best_of(subject, repeat=3)
        store.close()
    return Row(
        "live path: validate + previews, 8 tfs",
        len(ticks),
        "ticks",
        seconds,
        "bare per-tick loop",
        best_of(baseline, repeat=3),
    )


async def _no_history(symbol: str, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
    return []
