"""Real series of final bars for the SMC comparison and bench (../shared/data)."""

from __future__ import annotations

from pathlib import Path

from bench.data import fxcm_year
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.ingest.broker.replay.readers import read_dukascopy_candles

FEBRUARY_2019_MS = 1_548_979_200_000


def final(
    symbol: str, tf: Timeframe, open_ms: int, ohlc: tuple[float, ...], volume: float
) -> OhlcvEvent:
    close_ms = open_ms + tf.ms - 1
    o, h, l, c = ohlc  # noqa: E741 - the usual OHLC letters
    return OhlcvEvent(
        symbol, tf, open_ms, close_ms, o, h, l, c, volume, 0, True, Source.HISTORY, close_ms, 0
    )


def fxcm_minutes(shared: Path, pair: str, year: int) -> list[OhlcvEvent]:
    """A year of FXCM bid 1m bars as final events (no volume in the files: 0)."""
    opens, prices = fxcm_year(shared / "fxcm" / f"fxcm-{pair}-m1-bid-{year}.csv.zip")
    symbol = pair.upper()
    return [
        final(symbol, Timeframe.M1, int(o), tuple(float(x) for x in p), 0)
        for o, p in zip(opens, prices, strict=True)
    ]


def dukascopy_hours(shared: Path) -> list[OhlcvEvent]:
    """Dukascopy's EURUSD bid 1h candles of February 2019, traded hours only."""
    path = shared / "dukascopy/EURUSD/2019/01/BID_candles_hour_1.bi5"
    candles = read_dukascopy_candles(path, "EURUSD", FEBRUARY_2019_MS)
    return [
        final("EURUSD", Timeframe.H1, c.open_ms, (c.open, c.high, c.low, c.close), c.volume)
        for c in candles
        if c.volume > 0
    ]
