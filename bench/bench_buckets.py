"""Bucket geometry: the vectorised twin against the scalar function in a Python loop."""

from __future__ import annotations

import datetime as dt

import numpy as np

from bench.runner import Row, best_of
from fxconnector.config.calendars import load_calendar
from fxconnector.core.buckets import bucket_open, bucket_open_array
from fxconnector.core.time_geom import Timeframe, to_ms


def run() -> list[Row]:
    now_ms = to_ms(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    calendar = load_calendar("fx_ny", now_ms=now_ms).default
    rng = np.random.default_rng(7)
    start = to_ms(dt.datetime(2019, 1, 1, tzinfo=dt.UTC))
    stamps = np.sort(rng.integers(start, start + 365 * 86_400_000, size=1_000_000, dtype=np.int64))
    sample = stamps[:100_000].tolist()
    rows = []
    for tf in (Timeframe.M5, Timeframe.D1):

        def vectorised(tf: Timeframe = tf) -> object:
            return bucket_open_array(stamps, tf, calendar)

        def scalar_loop(tf: Timeframe = tf) -> object:
            return [bucket_open(t, tf, calendar) for t in sample]

        vector = best_of(vectorised)
        scalar = best_of(scalar_loop, repeat=3)
        rows.append(
            Row(
                name=f"bucket_open_array {tf.value} (1M stamps)",
                items=stamps.size,
                unit="ts",
                seconds=vector,
                baseline_name="scalar loop",
                baseline_seconds=scalar * stamps.size / len(sample),
            )
        )
    return rows
