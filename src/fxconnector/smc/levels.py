"""Previous trading day's and week's high and low, on the calendar's trading-day boundary.

Definition (docs/smc.md): trading days start at the calendar's boundary (17:00 New York,
DST-aware, by default) from `core.time_geom.DayGrid`. A trading day's date is the local date of
its end (a day that starts Sunday 17:00 New York is Monday's); a week runs from the open of a
Saturday trading date (Friday 17:00 New York) to the next one, so Friday's close ends it and
Sunday-evening trading opens the next under any boundary. When a
day (week) is complete (periods.py), `prev_day_high`/`prev_day_low` (`prev_week_*`) give its
extremes: price = the extreme, anchor = the bar that made it (the first of equal ones), confirm =
the bar at which the period was complete. Highs are bear, lows bull. Days and weeks without bars
give nothing.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.smc import Direction, SmcHint, SmcKind
from fxconnector.core.time_geom import DayGrid, from_ms, local_instant_ms
from fxconnector.smc.hints import HintMaker
from fxconnector.smc.periods import Extremes


@lru_cache(maxsize=8)
def day_grid(zone: dt.tzinfo, start_minute: int) -> DayGrid:
    """The trading-day grid of a zone and start (built once per pair: it covers 130 years)."""
    return DayGrid(zone, start_minute)


class _Weeks:
    """Week of a trading day, and where the week ends."""

    __slots__ = ("_grid",)

    def __init__(self, grid: DayGrid) -> None:
        self._grid = grid

    def trading_date(self, day_open_ms: int) -> dt.date:
        local = from_ms(day_open_ms).astimezone(self._grid.zone)
        if self._grid.start_minute == 0:
            return local.date()
        return local.date() + dt.timedelta(days=1)

    def bounds(self, day_open_ms: int) -> tuple[int, int]:
        """(start, end) of the week containing the trading day that opens at `day_open_ms`.

        A week starts with the Saturday trading date (Friday 17:00 New York under the default
        boundary: the market is closed until Sunday evening) and ends with the next one, so the
        week's Friday closes it and Sunday-evening trading opens the next.
        """
        date = self.trading_date(day_open_ms)
        saturday = date - dt.timedelta(days=(date.weekday() - 5) % 7)
        return self._open_of(saturday), self._open_of(saturday + dt.timedelta(days=7))

    def _open_of(self, trading_date: dt.date) -> int:
        grid = self._grid
        local_day = trading_date if grid.start_minute == 0 else trading_date - dt.timedelta(days=1)
        return local_instant_ms(local_day, grid.start_minute, grid.zone)


class PreviousLevels:
    """Emits `prev_day_high/low` and `prev_week_high/low`."""

    __slots__ = ("_day", "_grid", "_last", "_make", "_week", "_weeks")

    def __init__(self, make: HintMaker, grid: DayGrid) -> None:
        self._make = make
        self._grid = grid
        self._weeks = _Weeks(grid)
        self._day: Extremes | None = None
        self._week: Extremes | None = None
        self._last: dict[SmcKind, SmcHint] = {}

    def active(self) -> list[SmcHint]:
        """The latest previous-day and previous-week levels."""
        return list(self._last.values())

    def clone(self) -> PreviousLevels:
        other = PreviousLevels(self._make, self._grid)
        other._day = None if self._day is None else self._day.copy()
        other._week = None if self._week is None else self._week.copy()
        other._last = dict(self._last)
        return other

    def on_bar(self, bar: OhlcvEvent, out: list[SmcHint]) -> None:
        day, week = self._day, self._week
        if day is not None and bar.open_ms >= day.end_ms:
            self._emit(day, SmcKind.PREV_DAY_HIGH, SmcKind.PREV_DAY_LOW, bar, out)
            day = None
        if week is not None and bar.open_ms >= week.end_ms:
            self._emit(week, SmcKind.PREV_WEEK_HIGH, SmcKind.PREV_WEEK_LOW, bar, out)
            week = None
        if day is None:
            start = self._grid.day_open(bar.open_ms)
            day = Extremes.first(bar, start, self._grid.next_day_open(bar.open_ms))
        else:
            day.add(bar)
        if week is None:
            start, end = self._weeks.bounds(day.start_ms)
            week = Extremes.first(bar, start, end)
        else:
            week.add(bar)
        if bar.close_ms + 1 >= day.end_ms:
            self._emit(day, SmcKind.PREV_DAY_HIGH, SmcKind.PREV_DAY_LOW, bar, out)
            day = None
        if bar.close_ms + 1 >= week.end_ms:
            self._emit(week, SmcKind.PREV_WEEK_HIGH, SmcKind.PREV_WEEK_LOW, bar, out)
            week = None
        self._day, self._week = day, week

    def _emit(
        self,
        period: Extremes,
        high_kind: SmcKind,
        low_kind: SmcKind,
        bar: OhlcvEvent,
        out: list[SmcHint],
    ) -> None:
        make = self._make
        high = make.level(high_kind, Direction.BEAR, period.high_ts, bar.close_ms, period.high)
        low = make.level(low_kind, Direction.BULL, period.low_ts, bar.close_ms, period.low)
        self._last[high_kind] = high
        self._last[low_kind] = low
        out.extend((high, low))
