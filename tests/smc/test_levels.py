"""Previous day/week high and low on the 17:00 New York boundary (DST-aware), and sessions."""

from __future__ import annotations

from fxconnector.core.model.smc import Direction, SmcKind
from fxconnector.core.time_geom import HOUR_MS, MINUTE_MS, Timeframe
from tests.smc.bars import final
from tests.smc.kinds import of, run

# Winter: the trading day starts 22:00 UTC; summer (after 2019-03-10): 21:00 UTC.
WINTER_DAY = 1_549_317_600_000  # Mon 2019-02-04T22:00:00Z, Tuesday's trading day opens
SUMMER_DAY = 1_560_200_400_000  # Mon 2019-06-10T21:00:00Z


def hourly(start_ms: int, hours: int, base: float = 1.0) -> list:  # type: ignore[type-arg]
    return [
        final(
            start_ms + i * HOUR_MS,
            (base, base + 0.01 * (i % 5 + 1), base - 0.001 * i, base),
            Timeframe.H1,
        )
        for i in range(hours)
    ]


def test_a_trading_day_ends_at_17_new_york_in_winter_and_in_summer() -> None:
    for day_open in (WINTER_DAY, SUMMER_DAY):
        bars = hourly(day_open - 2 * HOUR_MS, 30)
        hints = run(bars)
        highs = of(hints, SmcKind.PREV_DAY_HIGH)
        # the day before closes with the bar that ends at day_open - 1
        first = highs[0]
        assert first.confirm_ts == day_open - 1
        (low,) = [h for h in of(hints, SmcKind.PREV_DAY_LOW) if h.confirm_ts == day_open - 1]
        assert first.direction is Direction.BEAR
        assert low.direction is Direction.BULL
        # two bars of that day: 1.0 + 0.01 * (1, 2): high 1.02 at the second
        assert first.price == 1.02
        assert first.anchor_ts == day_open - HOUR_MS


def test_a_day_without_its_last_bar_is_complete_at_the_next_days_first_bar() -> None:
    bars = [b for b in hourly(WINTER_DAY - 3 * HOUR_MS, 6) if b.close_ms != WINTER_DAY - 1]
    (high,) = of(run(bars), SmcKind.PREV_DAY_HIGH)
    assert high.confirm_ts == WINTER_DAY + HOUR_MS - 1  # the close of the next day's first bar


def test_the_week_ends_friday_17_new_york_and_sunday_evening_opens_the_next() -> None:
    friday_close = 1_549_663_200_000  # Fri 2019-02-08T22:00:00Z
    sunday_open = friday_close + 2 * 24 * HOUR_MS
    bars = hourly(friday_close - 3 * HOUR_MS, 3) + hourly(sunday_open, 3, base=1.1)
    hints = run(bars)
    (week_high,) = of(hints, SmcKind.PREV_WEEK_HIGH)
    assert week_high.confirm_ts == friday_close - 1
    assert [h.confirm_ts for h in of(hints, SmcKind.PREV_DAY_HIGH)] == [friday_close - 1]


def test_london_session_follows_uk_summer_time() -> None:
    # London 08:00-17:00 local: 08:00-17:00 UTC in winter, 07:00-16:00 UTC in summer.
    for midnight, start_h in ((1_549_238_400_000, 8), (1_560_124_800_000, 7)):  # Feb 4, Jun 10
        bars = [
            final(midnight + m * 30 * MINUTE_MS, (1.0, 1.0 + m / 1000, 0.99, 1.0), Timeframe.M30)
            for m in range(48)
        ]
        (london,) = of(run(bars), SmcKind.SESSION_LONDON)
        assert london.anchor_ts == midnight + start_h * HOUR_MS
        assert london.confirm_ts == midnight + (start_h + 9) * HOUR_MS - 1
        last_in = (start_h + 9) * 2 - 1
        assert london.top == 1.0 + last_in / 1000
        assert london.bottom == 0.99


def test_no_sessions_above_the_configured_timeframe() -> None:
    bars = [
        final(WINTER_DAY + i * 4 * HOUR_MS, (1.0, 1.01, 0.99, 1.0), Timeframe.H4) for i in range(12)
    ]
    hints = run(bars)
    assert not of(hints, SmcKind.SESSION_ASIA, SmcKind.SESSION_LONDON, SmcKind.SESSION_NEW_YORK)
    assert of(hints, SmcKind.PREV_DAY_HIGH)
