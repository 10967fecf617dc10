"""Time units, the timeframe registry and the trading-day grid.

Rules: every time is an int of UTC epoch milliseconds. A trading day starts at a local wall-clock
time in a time zone (17:00 America/New_York by default); the grid of those starts is precomputed
once for the supported range, so scalar and vectorised lookups read the same table and cannot
drift. This module knows nothing of bars, calendars' opening hours or I/O: the time zone object is
handed in by the caller.
"""

from __future__ import annotations

import bisect
import datetime as dt
from enum import StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from fxconnector.core.errors import ContractViolation

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000

#: Supported time range, [RANGE_START_MS, RANGE_END_MS): 1970-01-01 to 2100-01-01 UTC.
RANGE_START_MS: Final = 0
RANGE_END_MS: Final = 4_102_444_800_000

I64Array = npt.NDArray[np.int64]

_EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()


class Timeframe(StrEnum):
    """The timeframe registry (DESIGN §4). Values are the public spelling."""

    M1 = "1m"
    M3 = "3m"
    M5 = "5m"
    M15 = "15m"
    M30 = "30m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"

    @property
    def ms(self) -> int:
        """Length of one bucket in milliseconds."""
        return _TF_MS[self]

    @property
    def session_aligned(self) -> bool:
        """True when buckets align to the trading-day boundary rather than the UTC epoch."""
        return self in (Timeframe.H4, Timeframe.D1)


_TF_MS: Final[dict[Timeframe, int]] = {
    Timeframe.M1: MINUTE_MS,
    Timeframe.M3: 3 * MINUTE_MS,
    Timeframe.M5: 5 * MINUTE_MS,
    Timeframe.M15: 15 * MINUTE_MS,
    Timeframe.M30: 30 * MINUTE_MS,
    Timeframe.H1: HOUR_MS,
    Timeframe.H4: 4 * HOUR_MS,
    Timeframe.D1: DAY_MS,
}

#: Every timeframe in ascending length.
TIMEFRAMES: Final[tuple[Timeframe, ...]] = tuple(sorted(Timeframe, key=lambda tf: tf.ms))


def floor_array(ts_ms: I64Array, size_ms: int) -> I64Array:
    """`ts_ms - ts_ms % size_ms` for non-negative stamps in range, computed in float64.

    Exact here: a stamp below 2**53 is exact in float64, and for `size_ms` from 1 minute to 1 day
    the quotient's distance to the next integer (at least 1/size_ms) is far above its rounding
    error (below 2**-20 for quotients under 2**32), so the floor never lands on the wrong side.
    Integer `%` on int64 costs about five times more in numpy.
    """
    quotient = np.floor(ts_ms / float(size_ms))
    return quotient.astype(np.int64) * np.int64(size_ms)


def tf_ms(tf: Timeframe) -> int:
    """Length of one bucket of `tf` in milliseconds."""
    return _TF_MS[tf]


def parse_timeframe(text: str) -> Timeframe:
    """The Timeframe spelled `text` (`1m`, `4h`, ...); ContractViolation if there is none."""
    try:
        return Timeframe(text)
    except ValueError:
        known = " ".join(tf.value for tf in TIMEFRAMES)
        raise ContractViolation(f"unknown timeframe {text!r} (known: {known})") from None


def check_in_range(ts_ms: int) -> None:
    """Raise ContractViolation when `ts_ms` is outside the supported range."""
    if not RANGE_START_MS <= ts_ms < RANGE_END_MS:
        raise ContractViolation(
            f"timestamp {ts_ms} is outside the supported range "
            f"[{RANGE_START_MS}, {RANGE_END_MS}) (1970-01-01 to 2100-01-01 UTC)"
        )


def to_ms(moment: dt.datetime) -> int:
    """Epoch milliseconds of an aware datetime (exact to the millisecond)."""
    if moment.tzinfo is None:
        raise ContractViolation(f"naive datetime {moment.isoformat()} has no time zone")
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_ms(ts_ms: int) -> dt.datetime:
    """Aware UTC datetime of epoch milliseconds."""
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ts_ms)


def iso_utc(ts_ms: int) -> str:
    """ISO-8601 UTC text with a `Z` suffix, to the millisecond when needed."""
    moment = from_ms(ts_ms)
    if ts_ms % 1000:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def local_instant_ms(day: dt.date, minute_of_day: int, zone: dt.tzinfo) -> int:
    """Epoch ms of the local wall-clock time `minute_of_day` on `day` in `zone`.

    Ambiguous times take the first occurrence (fold=0); a time inside a spring-forward gap takes
    the offset before the switch (PEP 495), as `astimezone` does. Calendars are checked so neither
    matters where trading happens.
    """
    hours, minutes = divmod(minute_of_day, 60)
    offset = dt.datetime(day.year, day.month, day.day, hours, minutes, tzinfo=zone).utcoffset()
    offset_ms = 0 if offset is None else (offset.days * 86_400 + offset.seconds) * 1000
    return (day.toordinal() - _EPOCH_ORDINAL) * DAY_MS + minute_of_day * MINUTE_MS - offset_ms


class DayGrid:
    """Trading-day starts, as epoch ms, over the supported range.

    `day_open(ts)` is the last start at or before `ts`. Built from a time zone and a local start
    time; a fixed-offset zone gives exactly 24h days, a DST zone gives 23h/25h days on switch days.
    """

    __slots__ = ("_starts", "_starts_list", "start_minute", "zone")

    def __init__(self, zone: dt.tzinfo, start_minute: int) -> None:
        if not 0 <= start_minute < 24 * 60:
            raise ContractViolation(f"trading-day start minute {start_minute} is not in [0, 1440)")
        self.zone = zone
        self.start_minute = start_minute
        first = dt.date(1969, 12, 30)
        count = (dt.date(2100, 1, 2) - first).days
        starts = [
            local_instant_ms(first + dt.timedelta(days=i), start_minute, zone) for i in range(count)
        ]
        self._starts_list = starts
        self._starts: I64Array = np.asarray(starts, dtype=np.int64)

    @property
    def starts(self) -> I64Array:
        """All trading-day starts, ascending (read-only view)."""
        view = self._starts.view()
        view.flags.writeable = False
        return view

    def day_open(self, ts_ms: int) -> int:
        """Start of the trading day that contains `ts_ms`."""
        check_in_range(ts_ms)
        return self._starts_list[bisect.bisect_right(self._starts_list, ts_ms) - 1]

    def next_day_open(self, ts_ms: int) -> int:
        """Start of the trading day after the one that contains `ts_ms`."""
        check_in_range(ts_ms)
        return self._starts_list[bisect.bisect_right(self._starts_list, ts_ms)]

    def day_open_array(self, ts_ms: I64Array) -> I64Array:
        """Vectorised `day_open` (same table, same answers)."""
        if ts_ms.size == 0:
            return np.zeros(0, dtype=np.int64)
        ascending = ts_ms.size < 2 or bool(np.all(ts_ms[1:] >= ts_ms[:-1]))
        low, high = (ts_ms[0], ts_ms[-1]) if ascending else (ts_ms.min(), ts_ms.max())
        if low < RANGE_START_MS or high >= RANGE_END_MS:
            check_in_range(int(low) if low < RANGE_START_MS else int(high))
        if ascending:
            # Few days, many stamps: find where each day starts in the stamps, then repeat.
            first = int(np.searchsorted(self._starts, low, side="right")) - 1
            last = int(np.searchsorted(self._starts, high, side="right"))
            days = self._starts[first:last]
            edges = np.searchsorted(ts_ms, days[1:], side="left")
            counts = np.diff(np.concatenate(([0], edges, [ts_ms.size])))
            return np.repeat(days, counts)
        index = np.searchsorted(self._starts, ts_ms, side="right") - 1
        return self._starts[index]
