"""Bars for the SMC tests: hand-made rows and real series from ../shared/data."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from fxconnector.core.builders.derive import derive
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.ingest.broker.replay.readers import read_dukascopy_candles
from tests.fxcm_data import fxcm_finals

#: Sun 2019-02-03 22:00 UTC: a week's open under fx_ny (17:00 New York, winter time).
WEEK_OPEN_MS = 1_549_231_200_000
DUKASCOPY_DAY_MS = 1_549_238_400_000  # 2019-02-04T00:00:00Z
DUKASCOPY_MONTH_MS = 1_548_979_200_000  # 2019-02-01T00:00:00Z


def final(
    open_ms: int,
    ohlc: tuple[float, float, float, float],
    tf: Timeframe = Timeframe.M1,
    symbol: str = "EURUSD",
    rev: int = 0,
) -> OhlcvEvent:
    o, h, l, c = ohlc  # noqa: E741 - the usual OHLC letters
    close_ms = open_ms + tf.ms - 1
    return OhlcvEvent(
        symbol, tf, open_ms, close_ms, o, h, l, c, 1, 1, True, Source.HISTORY, close_ms, rev
    )


def rows(
    ohlc: Sequence[tuple[float, float, float, float]],
    start_ms: int = WEEK_OPEN_MS,
    tf: Timeframe = Timeframe.M1,
) -> list[OhlcvEvent]:
    """Consecutive final bars of `tf` from `start_ms`."""
    return [final(start_ms + i * tf.ms, row, tf) for i, row in enumerate(ohlc)]


def highs_lows(
    pairs: Sequence[tuple[float, float]], start_ms: int = WEEK_OPEN_MS
) -> list[OhlcvEvent]:
    """Bars from (high, low): open at the low, close at the high's mid-point (a neutral body)."""
    return rows([(low, high, low, (high + low) / 2) for high, low in pairs], start_ms)


@lru_cache(maxsize=4)
def fxcm_year(shared: Path, pair: str, year: int) -> tuple[OhlcvEvent, ...]:
    path = shared / "fxcm" / f"fxcm-{pair}-m1-bid-{year}.csv.zip"
    return tuple(fxcm_finals(path, pair.upper()))


@lru_cache(maxsize=4)
def fxcm_derived(
    shared: Path, pair: str, year: int, tf: Timeframe, fx_ny: CalendarProfile
) -> tuple[OhlcvEvent, ...]:
    return tuple(derive(fxcm_year(shared, pair, year), tf, fx_ny.for_symbol(pair.upper())))


@lru_cache(maxsize=2)
def dukascopy_minutes(shared: Path) -> tuple[OhlcvEvent, ...]:
    """Dukascopy's own EURUSD bid 1m candles of 2019-02-04, traded minutes only."""
    path = shared / "dukascopy/EURUSD/2019/01/04/BID_candles_min_1.bi5"
    candles = read_dukascopy_candles(path, "EURUSD", DUKASCOPY_DAY_MS)
    return tuple(
        final(c.open_ms, (c.open, c.high, c.low, c.close)) for c in candles if c.volume > 0
    )


@lru_cache(maxsize=2)
def dukascopy_hours(shared: Path) -> tuple[OhlcvEvent, ...]:
    """Dukascopy's own EURUSD bid 1h candles of February 2019, traded hours only."""
    path = shared / "dukascopy/EURUSD/2019/01/BID_candles_hour_1.bi5"
    candles = read_dukascopy_candles(path, "EURUSD", DUKASCOPY_MONTH_MS)
    return tuple(
        final(c.open_ms, (c.open, c.high, c.low, c.close), Timeframe.H1)
        for c in candles
        if c.volume > 0
    )
