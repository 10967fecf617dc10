"""The trading calendar against an independent wall-clock oracle, and its edges."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.calendar import CalendarProfile, TradingCalendar
from fxconnector.core.time_geom import DAY_MS, MINUTE_MS, from_ms, to_ms

NEW_YORK = ZoneInfo("America/New_York")
# The profile lists Christmas 2010-2040 and New Year 2011-2041; the oracle knows the same rule.
window = st.integers(
    min_value=to_ms(dt.datetime(2010, 1, 2, tzinfo=dt.UTC)) // MINUTE_MS,
    max_value=to_ms(dt.datetime(2040, 12, 1, tzinfo=dt.UTC)) // MINUTE_MS,
).map(lambda m: m * MINUTE_MS)


def oracle_is_open(ts_ms: int, *, metals: bool = False) -> bool:
    """FX hours from first principles: Sun 17:00 to Fri 17:00 New York, minus holidays."""
    local = from_ms(ts_ms).astimezone(NEW_YORK)
    minute = local.hour * 60 + local.minute
    weekday = local.weekday()
    if weekday == 5 or (weekday == 4 and minute >= 17 * 60) or (weekday == 6 and minute < 17 * 60):
        return False
    if metals and weekday in (0, 1, 2, 3) and 17 * 60 <= minute < 18 * 60:
        return False
    # Christmas Day and New Year's Day: closed 17:00 New York the evening before to 17:00.
    session_day = (local + dt.timedelta(hours=7)).date()  # the trading day this moment belongs to
    is_holiday = (session_day.month, session_day.day) in ((12, 25), (1, 1))
    return not (is_holiday and session_day.weekday() < 5)


@given(ts=window)
def test_is_open_matches_the_wall_clock_oracle(ts: int, fx_ny: CalendarProfile) -> None:
    assert fx_ny.default.is_open(ts) == oracle_is_open(ts)


@given(ts=window)
def test_metals_have_a_daily_break(ts: int, fx_ny: CalendarProfile) -> None:
    metals = fx_ny.for_symbol("XAUUSD")
    assert metals.tag == "fx_ny/metals"
    assert metals.is_open(ts) == oracle_is_open(ts, metals=True)


@given(start=window, length_min=st.integers(min_value=0, max_value=3 * 24 * 60))
def test_trading_minutes_count_whole_intervals(
    start: int, length_min: int, fx_ny: CalendarProfile
) -> None:
    cal = fx_ny.for_symbol("XAGUSD")
    end = start + length_min * MINUTE_MS
    brute = sum(cal.is_open(m) for m in range(start, end, MINUTE_MS))
    assert cal.trading_minutes(start, end) == brute
    assert cal.trading_minutes(end, start) == 0


@given(ts=window)
def test_next_open_and_next_pause_are_transitions(ts: int, fx_ny: CalendarProfile) -> None:
    cal = fx_ny.default
    nxt_open, nxt_pause = cal.next_open(ts), cal.next_pause(ts)
    assert nxt_open is not None
    assert nxt_pause is not None
    assert nxt_open > ts
    assert nxt_pause > ts
    assert cal.is_open(nxt_open)
    assert not cal.is_open(nxt_open - 1)
    assert not cal.is_open(nxt_pause)
    assert cal.is_open(nxt_pause - 1)
    # Nothing changes state between ts and the first of the two transitions.
    first = min(nxt_open, nxt_pause)
    assert cal.trading_ms(ts, first) in (0, first - ts)


def test_open_intervals_are_clipped_and_ordered(fx_ny: CalendarProfile) -> None:
    cal = fx_ny.default
    start = to_ms(dt.datetime(2019, 2, 1, tzinfo=dt.UTC))
    end = start + 10 * DAY_MS
    intervals = cal.open_intervals(start, end)
    assert intervals[0][0] == start
    assert intervals[-1][1] <= end
    assert all(a < b for a, b in intervals)
    assert all(prev[1] < nxt[0] for prev, nxt in itertools.pairwise(intervals))
    assert sum(b - a for a, b in intervals) == cal.trading_ms(start, end)


@pytest.mark.parametrize("year", range(2010, 2041))
def test_christmas_and_new_year_are_closed_when_on_weekdays(
    year: int, fx_ny: CalendarProfile
) -> None:
    cal = fx_ny.default
    for month, day in ((12, 25), (1, 1)):
        holiday = dt.date(year if month == 12 else year + 1, month, day)
        noon = to_ms(dt.datetime(holiday.year, holiday.month, holiday.day, 12, tzinfo=NEW_YORK))
        if holiday.weekday() < 5:
            assert not cal.is_open(noon), f"{holiday} should be closed"
        elif holiday.weekday() == 6:
            evening = noon + 6 * 3_600_000  # Sunday 18:00: the new week has opened
            assert cal.is_open(evening)


def test_always_open_never_pauses(always_open: CalendarProfile) -> None:
    cal = always_open.default
    ts = to_ms(dt.datetime(2024, 12, 25, tzinfo=dt.UTC))
    assert cal.is_open(ts)
    assert cal.is_open(0)
    assert cal.next_open(ts) is None
    assert cal.next_pause(ts) is None
    assert cal.trading_minutes(ts, ts + DAY_MS) == 24 * 60


def test_utc_00_shares_fx_hours_with_a_utc_day(
    utc_00: CalendarProfile, fx_ny: CalendarProfile
) -> None:
    ts = to_ms(dt.datetime(2019, 3, 11, 13, 30, tzinfo=dt.UTC))
    assert utc_00.default.is_open(ts) == fx_ny.default.is_open(ts)
    assert utc_00.day_grid.day_open(ts) == to_ms(dt.datetime(2019, 3, 11, tzinfo=dt.UTC))
    assert fx_ny.day_grid.day_open(ts) == to_ms(dt.datetime(2019, 3, 10, 21, tzinfo=dt.UTC))


def test_groups_share_the_profile_day_grid(fx_ny: CalendarProfile) -> None:
    metals: TradingCalendar = fx_ny.for_symbol("XAUUSD")
    assert metals.day_grid is fx_ny.default.day_grid
    assert fx_ny.for_symbol("EURUSD") is fx_ny.default
    assert [c.tag for c in fx_ny.calendars()] == ["fx_ny", "fx_ny/metals"]


@given(start=window, seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_is_open_array_of_ascending_stamps_matches_the_scalar(
    start: int, seed: int, fx_ny: CalendarProfile
) -> None:
    """Long ascending input (a recording) takes the per-session path; same answers, with stamps
    on session edges, repeated stamps and stamps past the calendar's sessions."""
    cal = fx_ny.default
    steps = np.random.default_rng(seed).integers(0, 2 * DAY_MS // 1000, size=5000) * 1000
    stamps = np.cumsum(np.concatenate(([start], steps)).astype(np.int64))
    stamps[::7] -= stamps[::7] % MINUTE_MS  # whole minutes: session edges are hit
    stamps = np.maximum.accumulate(stamps)
    assert cal.is_open_array(stamps).tolist() == [cal.is_open(int(t)) for t in stamps]
