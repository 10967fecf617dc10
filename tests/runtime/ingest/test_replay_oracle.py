"""Outside oracle: replaying Dukascopy's ticks reproduces Dukascopy's own 1m and 1h candles."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fxconnector.core.builders.spec import BarSpec, PriceSide, VolumeMode
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.model.bar import StoredFinal
from fxconnector.core.time_geom import TIMEFRAMES, Timeframe
from fxconnector.runtime.ingest.broker.replay.readers import (
    Candle,
    read_dukascopy_candles,
    read_ticks,
)
from fxconnector.runtime.ingest.replay import run_replay
from fxconnector.runtime.store.ssot_jsonl import JsonlStore

DAY_MS = 1_549_238_400_000  # 2019-02-04T00:00:00Z
FEB_MS = 1_548_979_200_000  # 2019-02-01T00:00:00Z


def points(value: float) -> int:
    return round(value * 100_000)


def same_ohlc(bar: StoredFinal, candle: Candle) -> bool:
    ours = (points(bar.open), points(bar.high), points(bar.low), points(bar.close))
    theirs = (points(candle.open), points(candle.high), points(candle.low), points(candle.close))
    return ours == theirs


@pytest.mark.slow
@pytest.mark.parametrize("side", ["BID", "ASK"])
def test_replay_equals_dukascopy_candles(
    side: str,
    shared_data: Path,
    tmp_path: Path,
    always_open: CalendarProfile,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = shared_data / "dukascopy"
    batch = read_ticks(root, "EURUSD", "dukascopy")
    store = JsonlStore(tmp_path / "ssot")
    store.open()
    spec = BarSpec(price=PriceSide(side.lower()), volume=VolumeMode.SIZE)
    summary = asyncio.run(
        run_replay(
            batch, calendar=always_open.default, timeframes=TIMEFRAMES, spec=spec, store=store
        )
    )
    assert summary.rejected == {}
    assert summary.late_ticks == 0
    minutes = {b.open_ms: b for b in store.bars("EURUSD", Timeframe.M1)}
    hours = {b.open_ms: b for b in store.bars("EURUSD", Timeframe.H1)}
    store.close()

    candles_1m = read_dukascopy_candles(
        root / "EURUSD/2019/01/04" / f"{side}_candles_min_1.bi5", "EURUSD", DAY_MS
    )
    traded = [c for c in candles_1m if c.volume > 0]
    assert len(candles_1m) == 1440
    assert len(traded) == len(minutes) == 1440
    ohlc_mismatch = [c.open_ms for c in traded if not same_ohlc(minutes[c.open_ms], c)]
    volume_error = max(abs(minutes[c.open_ms].volume - c.volume) / c.volume for c in traded)
    assert ohlc_mismatch == []
    assert volume_error < 1e-4  # float32 tick sizes summed vs the provider's float32 total

    candles_1h = read_dukascopy_candles(
        root / "EURUSD/2019/01" / f"{side}_candles_hour_1.bi5", "EURUSD", FEB_MS
    )
    that_day = [c for c in candles_1h if DAY_MS <= c.open_ms < DAY_MS + 86_400_000]
    assert len(that_day) == len(hours) == 24
    assert [c.open_ms for c in that_day if not same_ohlc(hours[c.open_ms], c)] == []
    with capsys.disabled():
        print(
            f"\noracle {side}: 1440 minutes and 24 hours compared, 0 OHLC mismatches, "
            f"max volume error {volume_error:.2e}"
        )
