"""The one bucket geometry: which bucket of a timeframe a moment falls in.

Rules (DESIGN §3, §4): a bucket is `[open_ms, close_ms]`, end-inclusive, `close_ms = open_ms +
tf_ms - 1`. Timeframes up to 1h align to the UTC epoch; 4h and 1d align to the calendar's
trading-day start. The calendar loader guarantees every bucket that contains trading time is
exactly `tf_ms` long; in closed time (a 23h or 25h weekend day across a DST switch) buckets may
overlap or leave holes, and no bar is ever built there.

Every caller (validator, stores, builders, UI data) uses these functions; the scalar and
vectorised forms read the same day grid and are tested to agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from fxconnector.core.time_geom import DayGrid, I64Array, Timeframe, check_in_range, floor_array


class HasDayGrid(Protocol):
    """Anything that knows its trading-day grid (a TradingCalendar)."""

    @property
    def day_grid(self) -> DayGrid: ...


def bucket_open(ts_ms: int, tf: Timeframe, calendar: HasDayGrid) -> int:
    """Open of the `tf` bucket that contains `ts_ms`."""
    size = tf.ms
    if not tf.session_aligned:
        check_in_range(ts_ms)
        return ts_ms - ts_ms % size
    day = calendar.day_grid.day_open(ts_ms)
    return day + (ts_ms - day) // size * size


def bucket_opener(tf: Timeframe, calendar: HasDayGrid) -> Callable[[int], int]:
    """`bucket_open` for one timeframe with its lookups done once, for per-bar hot paths."""
    size = tf.ms
    if not tf.session_aligned:

        def epoch_open(ts_ms: int) -> int:
            check_in_range(ts_ms)
            return ts_ms - ts_ms % size

        return epoch_open
    day_open = calendar.day_grid.day_open

    def session_open(ts_ms: int) -> int:
        day = day_open(ts_ms)
        return day + (ts_ms - day) // size * size

    return session_open


def bucket_close(open_ms: int, tf: Timeframe) -> int:
    """Close (inclusive) of the bucket that opens at `open_ms`."""
    return open_ms + tf.ms - 1


def bucket_bounds(ts_ms: int, tf: Timeframe, calendar: HasDayGrid) -> tuple[int, int]:
    """(open_ms, close_ms) of the `tf` bucket that contains `ts_ms`."""
    opened = bucket_open(ts_ms, tf, calendar)
    return opened, opened + tf.ms - 1


def is_bucket_open(open_ms: int, tf: Timeframe, calendar: HasDayGrid) -> bool:
    """True when `open_ms` is a bucket boundary of `tf`."""
    return bucket_open(open_ms, tf, calendar) == open_ms


def bucket_open_array(ts_ms: I64Array, tf: Timeframe, calendar: HasDayGrid) -> I64Array:
    """Vectorised `bucket_open` for an int64 array of epoch ms; identical answers."""
    if not tf.session_aligned:
        if ts_ms.size:
            check_in_range(int(ts_ms.min()))
            check_in_range(int(ts_ms.max()))
        return floor_array(ts_ms, tf.ms)
    day = calendar.day_grid.day_open_array(ts_ms)
    return day + floor_array(ts_ms - day, tf.ms)
