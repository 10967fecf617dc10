"""Bucket geometry: properties over any moment, DST switches, scalar == vectorised."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fxconnector.core.buckets import (
    bucket_bounds,
    bucket_close,
    bucket_open,
    bucket_open_array,
    bucket_opener,
    is_bucket_open,
)
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.errors import ContractViolation
from fxconnector.core.time_geom import (
    DAY_MS,
    HOUR_MS,
    RANGE_END_MS,
    TIMEFRAMES,
    Timeframe,
    iso_utc,
    to_ms,
)
from tests.conftest import calendar_profile

timestamps = st.integers(min_value=0, max_value=RANGE_END_MS - 1)
timeframes = st.sampled_from(TIMEFRAMES)
calendars = st.sampled_from(["fx_ny", "utc_00", "always_open"])


def utc(text: str) -> int:
    return to_ms(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))


@given(ts=timestamps, tf=timeframes, name=calendars)
def test_bucket_contains_moment_and_has_tf_length(ts: int, tf: Timeframe, name: str) -> None:
    calendar = calendar_profile(name).default
    opened, closed = bucket_bounds(ts, tf, calendar)
    assert opened <= ts <= closed
    assert closed - opened + 1 == tf.ms
    assert bucket_close(opened, tf) == closed


@given(ts=timestamps, tf=timeframes, name=st.sampled_from(["utc_00", "always_open"]))
def test_fixed_day_grid_tiles_time(ts: int, tf: Timeframe, name: str) -> None:
    calendar = calendar_profile(name).default
    closed = bucket_close(bucket_open(ts, tf, calendar), tf)
    assume(closed + 1 < RANGE_END_MS)
    assert bucket_open(closed + 1, tf, calendar) == closed + 1
    assert is_bucket_open(closed + 1, tf, calendar)


@given(ts=timestamps, tf=timeframes)
def test_fx_ny_tiles_trading_time(ts: int, tf: Timeframe) -> None:
    calendar = calendar_profile("fx_ny").default
    assume(calendar.is_open(ts))
    opened = bucket_open(ts, tf, calendar)
    closed = bucket_close(opened, tf)
    assume(closed + 1 < RANGE_END_MS)
    assert bucket_open(closed + 1, tf, calendar) == closed + 1


@given(ts=timestamps, name=calendars)
def test_smaller_buckets_nest_in_larger_ones_in_trading_time(ts: int, name: str) -> None:
    calendar = calendar_profile(name).default
    assume(calendar.is_open(ts))
    chain = [
        Timeframe.M1,
        Timeframe.M5,
        Timeframe.M15,
        Timeframe.M30,
        Timeframe.H1,
        Timeframe.H4,
        Timeframe.D1,
    ]
    for small, large in itertools.pairwise(chain):
        s_open, s_close = bucket_bounds(ts, small, calendar)
        l_open, l_close = bucket_bounds(ts, large, calendar)
        assert l_open <= s_open <= s_close <= l_close


@given(values=st.lists(timestamps, min_size=0, max_size=200), tf=timeframes, name=calendars)
def test_vectorised_twin_gives_identical_results(
    values: list[int], tf: Timeframe, name: str
) -> None:
    calendar = calendar_profile(name).default
    array = np.asarray(values, dtype=np.int64)
    vectorised = bucket_open_array(array, tf, calendar)
    assert vectorised.dtype == np.int64
    assert vectorised.tolist() == [bucket_open(v, tf, calendar) for v in values]


@given(values=st.lists(timestamps, min_size=0, max_size=200), tf=timeframes, name=calendars)
def test_the_per_timeframe_opener_gives_identical_results(
    values: list[int], tf: Timeframe, name: str
) -> None:
    calendar = calendar_profile(name)
    opener = bucket_opener(tf, calendar)
    assert [opener(v) for v in values] == [bucket_open(v, tf, calendar) for v in values]


@pytest.mark.parametrize("bad", [-1, RANGE_END_MS])
@pytest.mark.parametrize("tf", [Timeframe.M1, Timeframe.D1])
def test_out_of_range_moments_are_refused(bad: int, tf: Timeframe, fx_ny: CalendarProfile) -> None:
    with pytest.raises(ContractViolation, match="outside the supported range"):
        bucket_open(bad, tf, fx_ny.default)
    with pytest.raises(ContractViolation, match="outside the supported range"):
        bucket_open_array(np.asarray([0, bad], dtype=np.int64), tf, fx_ny.default)
    with pytest.raises(ContractViolation, match="outside the supported range"):
        bucket_opener(tf, fx_ny.default)(bad)


def test_epoch_aligned_timeframes_ignore_the_calendar(fx_ny: CalendarProfile) -> None:
    ts = utc("2019-03-08T21:59:31.250Z")
    assert iso_utc(bucket_open(ts, Timeframe.M1, fx_ny.default)) == "2019-03-08T21:59:00Z"
    assert iso_utc(bucket_open(ts, Timeframe.M15, fx_ny.default)) == "2019-03-08T21:45:00Z"
    assert iso_utc(bucket_open(ts, Timeframe.H1, fx_ny.default)) == "2019-03-08T21:00:00Z"


def test_dst_example_from_the_issue(fx_ny: CalendarProfile) -> None:
    cal = fx_ny.default
    friday_close = utc("2019-03-08T22:00:00Z")
    sunday_open = utc("2019-03-10T21:00:00Z")
    assert cal.is_open(friday_close - 1)
    assert not cal.is_open(friday_close)
    assert cal.next_pause(friday_close - 60_000) == friday_close
    assert cal.next_open(friday_close) == sunday_open
    assert bucket_open(friday_close - 1, Timeframe.D1, cal) == utc("2019-03-07T22:00:00Z")
    assert bucket_open(sunday_open, Timeframe.D1, cal) == sunday_open
    assert bucket_open(sunday_open + DAY_MS - 1, Timeframe.D1, cal) == sunday_open
    assert bucket_open(sunday_open + DAY_MS, Timeframe.D1, cal) == sunday_open + DAY_MS


def _us_dst_switches(year: int) -> list[dt.datetime]:
    """Local Sunday 02:00 of each US DST switch in `year`, found from the tz database."""
    zone = ZoneInfo("America/New_York")
    found = []
    day = dt.datetime(year, 1, 1, 12, tzinfo=zone)
    previous = day.utcoffset()
    while day.year == year:
        offset = day.utcoffset()
        if offset != previous:
            found.append(day)
            previous = offset
        day += dt.timedelta(days=1)
    return found


@pytest.mark.parametrize("year", range(2015, 2031))
def test_daily_and_4h_buckets_around_every_us_dst_switch(year: int, fx_ny: CalendarProfile) -> None:
    cal = fx_ny.default
    zone = ZoneInfo("America/New_York")
    switches = _us_dst_switches(year)
    assert len(switches) == 2
    for switch_day in switches:
        assert switch_day.weekday() == 6, "US DST switches on a Sunday"
        sunday = switch_day.date()
        friday = sunday - dt.timedelta(days=2)
        friday_close = to_ms(dt.datetime(friday.year, friday.month, friday.day, 17, tzinfo=zone))
        sunday_open = to_ms(dt.datetime(sunday.year, sunday.month, sunday.day, 17, tzinfo=zone))
        # Friday's session ends at 17:00 New York, Sunday's starts at 17:00 New York.
        assert cal.is_open(friday_close - 1)
        assert not cal.is_open(friday_close)
        assert cal.next_open(friday_close) == sunday_open
        assert friday_close % HOUR_MS == 0
        assert sunday_open % HOUR_MS == 0
        # The weekend is 48h +- 1h: the switch happened inside it.
        assert abs((sunday_open - friday_close) - 2 * DAY_MS) == HOUR_MS
        for day_open in (friday_close - DAY_MS, sunday_open):
            for offset in (0, HOUR_MS, DAY_MS - 1):
                assert bucket_open(day_open + offset, Timeframe.D1, cal) == day_open
            assert bucket_open(day_open + DAY_MS, Timeframe.D1, cal) == day_open + DAY_MS
            fours = sorted(
                {bucket_open(day_open + h * HOUR_MS, Timeframe.H4, cal) for h in range(24)}
            )
            assert fours == [day_open + k * 4 * HOUR_MS for k in range(6)]
