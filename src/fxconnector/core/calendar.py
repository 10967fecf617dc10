"""The trading calendar: when a symbol trades, and where its trading days start.

Rules: a calendar is built from a `CalendarSpec` (decoded from `config/calendar_overrides.json`
by the config loader, which also hands in the time zone objects) and precomputes its open
intervals `[start, end)` in epoch ms over the supported range. Every question (is it open, when
does it next open or pause, how many trading minutes in a range) is a binary search over those
intervals, never a minute-by-minute walk. Pure: no clock, no files.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from fxconnector.core.buckets import bucket_open
from fxconnector.core.errors import ContractViolation
from fxconnector.core.time_geom import (
    HOUR_MS,
    MINUTE_MS,
    RANGE_END_MS,
    RANGE_START_MS,
    DayGrid,
    I64Array,
    Timeframe,
    iso_utc,
    local_instant_ms,
)

_FIRST_DATE = dt.date(1969, 12, 25)
_LAST_DATE = dt.date(2100, 1, 8)
#: From this many stamps on, ascending input takes the per-session path of `is_open_array`.
_SORTED_MIN = 4096


class Weekday(IntEnum):
    """ISO-like weekdays, Monday = 0 as in `datetime.date.weekday()`."""

    MONDAY = 0
    TUESDAY = 1
    WEDNESDAY = 2
    THURSDAY = 3
    FRIDAY = 4
    SATURDAY = 5
    SUNDAY = 6


@dataclass(frozen=True, slots=True)
class WeeklyInstant:
    """A local wall-clock moment in the week: weekday and minute of the day."""

    weekday: Weekday
    minute: int


@dataclass(frozen=True, slots=True)
class DailyBreak:
    """A local closure on some weekdays, `[start_minute, end_minute)`; may cross midnight."""

    weekdays: frozenset[Weekday]
    start_minute: int
    end_minute: int


@dataclass(frozen=True, slots=True)
class ClosedInterval:
    """A holiday or other closure in UTC epoch ms, `[start_ms, end_ms)`."""

    start_ms: int
    end_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class SymbolGroup:
    """Symbols that share daily breaks (metals, for example)."""

    name: str
    symbols: frozenset[str]
    daily_breaks: tuple[DailyBreak, ...] = ()


@dataclass(frozen=True, slots=True)
class CalendarSpec:
    """Everything that defines a calendar profile; time zones are tzinfo objects."""

    name: str
    zone: dt.tzinfo
    week_open: WeeklyInstant | None
    week_close: WeeklyInstant | None
    day_zone: dt.tzinfo
    day_start_minute: int
    closed_intervals: tuple[ClosedInterval, ...] = ()
    groups: tuple[SymbolGroup, ...] = ()

    def __post_init__(self) -> None:
        if (self.week_open is None) != (self.week_close is None):
            raise ContractViolation(f"calendar {self.name!r}: week open and close go together")


class TradingCalendar:
    """Open intervals of one symbol group of a profile, plus the profile's trading-day grid."""

    __slots__ = (
        "_cum",
        "_ends",
        "_ends_list",
        "_starts",
        "_starts_list",
        "day_grid",
        "group",
        "spec",
    )

    def __init__(self, spec: CalendarSpec, group: SymbolGroup | None, day_grid: DayGrid) -> None:
        self.spec = spec
        self.group = group
        self.day_grid = day_grid
        opens = list(_weekly_sessions(spec))
        closures = [(c.start_ms, c.end_ms) for c in spec.closed_intervals]
        if group is not None:
            closures.extend(_daily_breaks(spec.zone, group.daily_breaks))
        intervals = _subtract(opens, _merge(closures))
        self._starts_list = [s for s, _ in intervals]
        self._ends_list = [e for _, e in intervals]
        self._starts: I64Array = np.asarray(self._starts_list, dtype=np.int64)
        self._ends: I64Array = np.asarray(self._ends_list, dtype=np.int64)
        lengths = self._ends - self._starts
        self._cum: list[int] = [0, *np.cumsum(lengths).tolist()]

    @property
    def tag(self) -> str:
        """`profile` or `profile/group`, as shown in status."""
        return self.spec.name if self.group is None else f"{self.spec.name}/{self.group.name}"

    def is_open(self, ts_ms: int) -> bool:
        """True when the market trades at `ts_ms`."""
        i = bisect.bisect_right(self._starts_list, ts_ms) - 1
        return i >= 0 and ts_ms < self._ends_list[i]

    def session_at(self, ts_ms: int) -> tuple[int, int] | None:
        """The open interval `[start, end)` containing `ts_ms`, or None when closed then."""
        i = bisect.bisect_right(self._starts_list, ts_ms) - 1
        if i >= 0 and ts_ms < self._ends_list[i]:
            return (self._starts_list[i], self._ends_list[i])
        return None

    def is_open_array(self, ts_ms: I64Array) -> np.ndarray[tuple[int], np.dtype[np.bool_]]:
        """Vectorised `is_open`."""
        if ts_ms.size > _SORTED_MIN and bool(np.all(ts_ms[1:] >= ts_ms[:-1])):
            return self._is_open_sorted(ts_ms)
        i = np.searchsorted(self._starts, ts_ms, side="right") - 1
        safe = np.maximum(i, 0)
        return (i >= 0) & (ts_ms < self._ends[safe]) if self._ends.size else i < -1

    def _is_open_sorted(self, ts_ms: I64Array) -> np.ndarray[tuple[int], np.dtype[np.bool_]]:
        """`is_open_array` of ascending stamps (a recording): each session's rows are found by
        two binary searches into the stamps instead of one search per stamp."""
        first = int(np.searchsorted(self._ends, ts_ms[0], side="right"))
        last = int(np.searchsorted(self._starts, ts_ms[-1], side="right"))
        lo = np.searchsorted(ts_ms, self._starts[first:last], side="left")
        hi = np.searchsorted(ts_ms, self._ends[first:last], side="left")
        # Sessions do not overlap: +1 where one's rows begin, -1 where they end.
        edges = np.bincount(lo, minlength=ts_ms.size + 1) - np.bincount(
            hi, minlength=ts_ms.size + 1
        )
        opened: np.ndarray[tuple[int], np.dtype[np.bool_]] = np.cumsum(edges[:-1]) > 0
        return opened

    def next_open(self, ts_ms: int) -> int | None:
        """First moment after `ts_ms` at which a session starts; None past the range."""
        i = bisect.bisect_right(self._starts_list, ts_ms)
        if i >= len(self._starts_list):
            return None
        return self._starts_list[i]

    def next_pause(self, ts_ms: int) -> int | None:
        """First moment after `ts_ms` at which a session ends; None when none ends in range."""
        i = bisect.bisect_right(self._ends_list, ts_ms)
        if i >= len(self._ends_list) or self._ends_list[i] >= RANGE_END_MS:
            return None
        return self._ends_list[i]

    def trading_ms(self, from_ms: int, to_ms: int) -> int:
        """Open time inside `[from_ms, to_ms)` in ms."""
        if to_ms <= from_ms:
            return 0
        return self._covered(to_ms) - self._covered(from_ms)

    def trading_minutes(self, from_ms: int, to_ms: int) -> int:
        """Open minutes inside `[from_ms, to_ms)` (session edges are whole minutes)."""
        return self.trading_ms(from_ms, to_ms) // MINUTE_MS

    def open_intervals(self, from_ms: int, to_ms: int) -> list[tuple[int, int]]:
        """Open intervals clipped to `[from_ms, to_ms)`, ascending."""
        out: list[tuple[int, int]] = []
        i = max(bisect.bisect_right(self._starts_list, from_ms) - 1, 0)
        while i < len(self._starts_list) and self._starts_list[i] < to_ms:
            start = max(self._starts_list[i], from_ms)
            end = min(self._ends_list[i], to_ms)
            if start < end:
                out.append((start, end))
            i += 1
        return out

    def _covered(self, ts_ms: int) -> int:
        i = bisect.bisect_right(self._starts_list, ts_ms) - 1
        if i < 0:
            return 0
        return self._cum[i] + min(ts_ms, self._ends_list[i]) - self._starts_list[i]


class CalendarProfile:
    """A named profile: one day grid, one calendar per symbol group (built on first use)."""

    __slots__ = ("_by_group", "_group_of", "day_grid", "default", "spec")

    def __init__(self, spec: CalendarSpec) -> None:
        self.spec = spec
        self.day_grid = DayGrid(spec.day_zone, spec.day_start_minute)
        self.default = TradingCalendar(spec, None, self.day_grid)
        self._group_of = {sym: g for g in spec.groups for sym in g.symbols}
        self._by_group: dict[str, TradingCalendar] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    def for_symbol(self, symbol: str) -> TradingCalendar:
        """The calendar that applies to `symbol` (its group's, or the default)."""
        group = self._group_of.get(symbol)
        if group is None:
            return self.default
        found = self._by_group.get(group.name)
        if found is None:
            found = self._by_group[group.name] = TradingCalendar(self.spec, group, self.day_grid)
        return found

    def calendars(self) -> Iterator[TradingCalendar]:
        """The default calendar and one per symbol group."""
        yield self.default
        for group in self.spec.groups:
            yield self.for_symbol(next(iter(sorted(group.symbols))))


def bucket_length_problems(
    calendar: TradingCalendar, from_ms: int, to_ms: int, limit: int = 5
) -> list[str]:
    """Buckets in `[from_ms, to_ms)` that contain trading time but are not `tf_ms` long.

    Checks 4h and 1d (the session-aligned timeframes) against the trading-day grid, and that day
    starts fall on whole UTC hours so epoch-aligned timeframes nest inside days. Returns at most
    `limit` human-readable problems, each naming the offending bucket's UTC date.
    """
    problems: list[str] = []
    starts = calendar.day_grid.starts
    lo = int(np.searchsorted(starts, from_ms, side="right")) - 1
    hi = int(np.searchsorted(starts, to_ms, side="left"))
    for i in range(max(lo, 0), min(hi, len(starts) - 1)):
        day_start, day_end = int(starts[i]), int(starts[i + 1])
        if calendar.trading_ms(day_start, day_end) == 0:
            continue
        if day_start % HOUR_MS:
            problems.append(
                f"trading day starting {iso_utc(day_start)} does not start on a whole UTC hour"
            )
        for tf in (Timeframe.D1, Timeframe.H4):
            for open_ms in range(day_start, day_end, tf.ms):
                end = min(open_ms + tf.ms, day_end)
                if end - open_ms != tf.ms and calendar.trading_ms(open_ms, end) > 0:
                    hours = (end - open_ms) / HOUR_MS
                    problems.append(
                        f"{tf.value} bucket opening {iso_utc(open_ms)} contains trading time "
                        f"but is {hours:g}h long, not {tf.ms // HOUR_MS}h "
                        "(a DST switch or day start inside trading hours)"
                    )
        if len(problems) >= limit:
            break
    return problems[:limit]


def _weekly_sessions(spec: CalendarSpec) -> Iterator[tuple[int, int]]:
    if spec.week_open is None or spec.week_close is None:
        yield (RANGE_START_MS, RANGE_END_MS)
        return
    w_open, w_close = spec.week_open, spec.week_close
    span_days = (w_close.weekday - w_open.weekday) % 7
    if span_days == 0 and w_close.minute <= w_open.minute:
        span_days = 7
    day = _FIRST_DATE + dt.timedelta(days=(w_open.weekday - _FIRST_DATE.weekday()) % 7)
    while day <= _LAST_DATE:
        start = local_instant_ms(day, w_open.minute, spec.zone)
        end = local_instant_ms(day + dt.timedelta(days=span_days), w_close.minute, spec.zone)
        if end > RANGE_START_MS and start < RANGE_END_MS:
            yield (max(start, RANGE_START_MS), min(end, RANGE_END_MS))
        day += dt.timedelta(days=7)


def _daily_breaks(zone: dt.tzinfo, breaks: Iterable[DailyBreak]) -> Iterator[tuple[int, int]]:
    week = dt.timedelta(days=7)
    for brk in breaks:
        end_offset = dt.timedelta(days=1 if brk.end_minute <= brk.start_minute else 0)
        for weekday in brk.weekdays:
            day = _FIRST_DATE + dt.timedelta(days=(weekday - _FIRST_DATE.weekday()) % 7)
            while day <= _LAST_DATE:
                yield (
                    local_instant_ms(day, brk.start_minute, zone),
                    local_instant_ms(day + end_offset, brk.end_minute, zone),
                )
                day += week


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _subtract(
    opens: list[tuple[int, int]], closures: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Open intervals minus closures; both ascending, closures merged."""
    out: list[tuple[int, int]] = []
    j = 0
    for start, end in opens:
        while j < len(closures) and closures[j][1] <= start:
            j += 1
        k = j
        cursor = start
        while k < len(closures) and closures[k][0] < end:
            c_start, c_end = closures[k]
            if c_start > cursor:
                out.append((cursor, c_start))
            cursor = max(cursor, c_end)
            k += 1
        if cursor < end:
            out.append((cursor, end))
    return out


@dataclass(frozen=True, slots=True)
class CalendarAnswer:
    """A moment's bucket and market state; `fxconnector time` prints it in this field order."""

    at_ms: int
    tf: Timeframe
    open_ms: int
    close_ms: int
    is_open: bool
    next_open_ms: int | None
    next_pause_ms: int | None
    calendar: str


def describe(at_ms: int, tf: Timeframe, calendar: TradingCalendar) -> CalendarAnswer:
    """Bucket and market state at `at_ms` under `calendar`."""
    opened = bucket_open(at_ms, tf, calendar)
    return CalendarAnswer(
        at_ms=at_ms,
        tf=tf,
        open_ms=opened,
        close_ms=opened + tf.ms - 1,
        is_open=calendar.is_open(at_ms),
        next_open_ms=calendar.next_open(at_ms),
        next_pause_ms=calendar.next_pause(at_ms),
        calendar=calendar.tag,
    )
