"""SMC: our engine bar by bar against smartmoneyconcepts' batch functions, and the live cost.

Rows (both sides on the same real bars, in this process, interleaved and repeated):
- the engine over one month of FXCM GBPUSD 2012 1m bars, one `update` per final bar, against
  `smartmoneyconcepts` 0.0.27 computing swings, FVG, BOS/CHoCH, order blocks and liquidity over
  the same bars in one batch. A month, not the year: the package's `fvg`, `bos_choch` and `ob`
  grow faster than linearly (one scan of the rest of the series per object); one run over the
  year is `python -m bench.bench_smc --year` (minutes).
- the live cost of SMC on 28 symbols x 7 timeframes: every minute each symbol gets one final 1m
  bar and the higher timeframes whose bucket closed; the row times those updates (the whole year
  derived to each timeframe, per-update cost by timeframe, weighted by updates per minute) against
  the package re-run over a 1,000-bar window per final bar (what a batch tool has to do live).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import statistics
import time
from collections.abc import Sequence
from typing import Any

from bench.data import shared_data
from bench.runner import Row, interleaved
from bench.smc_series import fxcm_minutes
from fxconnector.config.calendars import load_calendar
from fxconnector.config.schema import BarsConfig
from fxconnector.core.builders.derive import derive
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import Timeframe, to_ms
from fxconnector.smc import SmcEngine

MONTH_BARS = 31_000
SYMBOLS = 28
WINDOW = 1_000


def their_module() -> Any:
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a banner on import
        from smartmoneyconcepts import smc
    return smc


def their_batch(smc: Any, bars: Sequence[OhlcvEvent]) -> object:
    import pandas as pd

    df = pd.DataFrame(
        {
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [1.0] * len(bars),  # FXCM files carry no volume; `ob` needs the column
        }
    )
    swings = smc.swing_highs_lows(df, swing_length=5)
    return (
        smc.fvg(df),
        smc.bos_choch(df, swings),
        smc.ob(df, swings),
        smc.liquidity(df, swings),
    )


def our_run(bars: Sequence[OhlcvEvent]) -> int:
    engine = SmcEngine(bars[0].symbol, bars[0].tf)
    return sum(len(engine.update(bar)) for bar in bars)


def live_cost(year: list[OhlcvEvent]) -> tuple[float, float]:
    """(seconds of engine work per minute of 28 symbols x 7 tfs, updates per minute)."""
    now_ms = to_ms(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    calendar = load_calendar("fx_ny", now_ms=now_ms).for_symbol(year[0].symbol)
    per_minute_s = 0.0
    updates = 0.0
    for tf in BarsConfig().timeframes:
        bars = year if tf is Timeframe.M1 else derive(year, tf, calendar)
        start = time.perf_counter()
        our_run(bars)
        per_update = (time.perf_counter() - start) / len(bars)
        rate = Timeframe.M1.ms / tf.ms  # updates per minute of one symbol
        per_minute_s += SYMBOLS * rate * per_update
        updates += SYMBOLS * rate
    return per_minute_s, updates


def run(year_run: bool = False) -> list[Row]:
    shared = shared_data()
    if shared is None:
        print("smc: no ../shared/data, rows skipped")
        return []
    try:
        smc = their_module()
    except ImportError:
        print("smc: smartmoneyconcepts is not installed (pip install .[bench]), rows skipped")
        return []
    year = fxcm_minutes(shared, "gbpusd", 2012)
    month = year[:MONTH_BARS]
    rows = [
        interleaved(lambda: our_run(month), lambda: their_batch(smc, month), rounds=3).row(
            f"smc engine bar by bar, 1m ({len(month) // 1000}k bars)",
            len(month),
            "bar",
            "smartmoneyconcepts batch",
        )
    ]
    costs = []
    for _ in range(3):
        costs.append(live_cost(year))
    seconds = statistics.median(c[0] for c in costs)
    updates = costs[0][1]
    window = year[-WINDOW:]
    start = time.perf_counter()
    for _ in range(3):
        their_batch(smc, window)
    their_per_update = (time.perf_counter() - start) / 3
    rows.append(
        Row(
            f"smc live 28 sym x 7 tf ({updates:.0f} upd/min, {100 * seconds / 60:.3f}% core)",
            round(updates),
            "upd",
            seconds,
            f"rerun {WINDOW} bars/upd",
            their_per_update * updates,
        )
    )
    if year_run:
        start = time.perf_counter()
        our_run(year)
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        their_batch(smc, year)
        theirs_s = time.perf_counter() - start
        rows.append(
            Row(
                f"smc engine, 1m year ({len(year) // 1000}k bars), one run",
                len(year),
                "bar",
                ours_s,
                "smartmoneyconcepts batch",
                theirs_s,
            )
        )
    return rows


if __name__ == "__main__":
    from bench.runner import print_table

    parser = argparse.ArgumentParser(description="SMC bench rows")
    parser.add_argument("--year", action="store_true", help="also one run each over the year")
    print_table(run(year_run=parser.parse_args().year))
