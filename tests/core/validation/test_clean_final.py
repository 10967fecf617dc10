"""`clean_final`, the hot paths' one-expression check, says yes exactly when `bar_problems`
finds nothing in a complete bar of the expected symbol and (epoch-aligned) timeframe."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.core.validation.validator import bar_problems, clean_final
from tests.conftest import calendar_profile

BASE = 1_549_238_400_000  # 2019-02-04 00:00 UTC
PRICES = st.sampled_from([1.1, 1.2, 1.0, 0.9, 1.15, math.nan, math.inf, -math.inf, 0.0, -1.0])


@st.composite
def events(draw: st.DrawFn) -> OhlcvEvent:
    tf = draw(st.sampled_from(list(Timeframe)))
    open_ms = BASE + draw(st.sampled_from([0, 1, MINUTE_MS, 5 * MINUTE_MS, 3_600_000, -1]))
    close_ms = open_ms + tf.ms - 1 + draw(st.sampled_from([0, 0, 0, 1, -1]))
    complete = draw(st.booleans())
    return OhlcvEvent(
        symbol=draw(st.sampled_from(["EURUSD", "EURUSD", "GBPJPY"])),
        tf=tf,
        open_ms=open_ms,
        close_ms=close_ms,
        open=draw(PRICES),
        high=draw(PRICES),
        low=draw(PRICES),
        close=draw(PRICES),
        volume=1,
        tick_count=1,
        complete=complete,
        source=draw(st.sampled_from(list(Source))),
        event_ts=close_ms + draw(st.sampled_from([0, 0, -1])),
        rev=0,
    )


@settings(max_examples=2000)
@given(event=events(), tf=st.sampled_from([tf for tf in Timeframe if not tf.session_aligned]))
def test_clean_final_is_bar_problems_for_a_complete_bar(event: OhlcvEvent, tf: Timeframe) -> None:
    calendar = calendar_profile("fx_ny").for_symbol("EURUSD")
    problems = bar_problems(event, calendar, symbols={"EURUSD"}, timeframes={tf})
    assert clean_final(event, "EURUSD", tf) == (not problems and event.complete is True)


def test_clean_final_leaves_session_aligned_timeframes_to_bar_problems() -> None:
    day = OhlcvEvent(
        symbol="EURUSD",
        tf=Timeframe.D1,
        open_ms=BASE - 5 * 3_600_000,
        close_ms=BASE - 5 * 3_600_000 + Timeframe.D1.ms - 1,
        open=1.1,
        high=1.2,
        low=1.0,
        close=1.1,
        volume=1,
        tick_count=1,
        complete=True,
        source=Source.DERIVED,
        event_ts=BASE - 5 * 3_600_000 + Timeframe.D1.ms - 1,
        rev=0,
    )
    assert not clean_final(day, "EURUSD", Timeframe.D1)


def test_clean_final_takes_a_good_minute() -> None:
    minute = OhlcvEvent(
        symbol="EURUSD",
        tf=Timeframe.M1,
        open_ms=BASE,
        close_ms=BASE + MINUTE_MS - 1,
        open=1.1,
        high=1.2,
        low=1.0,
        close=1.15,
        volume=1,
        tick_count=1,
        complete=True,
        source=Source.HISTORY,
        event_ts=BASE + MINUTE_MS - 1,
        rev=0,
    )
    assert clean_final(minute, "EURUSD", Timeframe.M1)
    assert not clean_final(minute, "GBPJPY", Timeframe.M1)
