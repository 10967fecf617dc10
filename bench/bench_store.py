"""The store's own grid guard at append: the guard alone against the final-bar check every append
already runs, and a store with a manifest against the same store without one (live shape, one
final 1m bar per call)."""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.runner import Row, best_of
from fxconnector.config.calendars import load_calendar
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import MINUTE_MS, Timeframe, to_ms
from fxconnector.runtime.store import manifest, rules
from fxconnector.runtime.store.ssot_jsonl import JsonlStore

BARS = 20_000
REPEAT = 5


def _bars(start_ms: int) -> list[OhlcvEvent]:
    out = []
    for i in range(BARS):
        open_ms = start_ms + i * MINUTE_MS
        price = 1.1 + (i % 50) * 0.0001
        out.append(
            OhlcvEvent(
                symbol="EURUSD",
                tf=Timeframe.M1,
                open_ms=open_ms,
                close_ms=open_ms + MINUTE_MS - 1,
                open=price,
                high=price + 0.0002,
                low=price - 0.0001,
                close=price + 0.0001,
                volume=60,
                tick_count=60,
                complete=True,
                source=Source.HISTORY,
                event_ts=open_ms + MINUTE_MS - 1,
                rev=0,
            )
        )
    return out


def _time_appends(
    bars: Sequence[OhlcvEvent], identity: manifest.StoreIdentity | None, per_call: int
) -> float:
    """Median seconds to append `bars` `per_call` at a time into a fresh store."""
    times = []
    for _ in range(REPEAT + 1):
        with tempfile.TemporaryDirectory() as tmp:
            store = JsonlStore(Path(tmp) / "ssot", fsync_interval_ms=10_000, identity=identity)
            store.open()
            start = time.perf_counter()
            for i in range(0, len(bars), per_call):
                store.append(bars[i : i + per_call])
            times.append(time.perf_counter() - start)
            store.close()
    return statistics.median(times[1:])  # the first run warms up


def run() -> list[Row]:
    now_ms = to_ms(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    profile = load_calendar("fx_ny", now_ms=now_ms)
    identity = manifest.StoreIdentity(
        manifest.wanted(
            store_kind="jsonl",
            calendar="fx_ny",
            profile=profile,
            timeframes=(Timeframe.M1,),
            price="bid",
            open_mode="first_tick",
            volume="ticks",
            symbols=("EURUSD",),
            origin="run",
        ),
        profile,
    )
    bars = _bars(to_ms(dt.datetime(2019, 2, 4, tzinfo=dt.UTC)))
    guard = manifest.GridCheck(Path("bench"), identity.manifest, profile)
    return [
        Row(
            name=f"store grid guard ({BARS} 1m bars)",
            items=len(bars),
            unit="bars",
            seconds=best_of(lambda: guard.check(bars)),
            baseline_name="rules.check_finals",
            baseline_seconds=best_of(lambda: rules.check_finals(bars)),
        ),
        Row(
            name="store append + grid guard (1 bar/call)",
            items=len(bars),
            unit="bars",
            seconds=_time_appends(bars, identity, 1),
            baseline_name="no manifest",
            baseline_seconds=_time_appends(bars, None, 1),
        ),
    ]
