"""The live builder and the vectorised builder make the same bars from the same ticks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.builders.live import LiveBuilder
from fxconnector.core.builders.spec import BarSpec, OpenMode, PriceSide, VolumeMode
from fxconnector.core.builders.vector import build
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.tick import TickBatch
from fxconnector.core.time_geom import TIMEFRAMES, Timeframe
from fxconnector.runtime.ingest.broker.replay.readers import read_ticks
from tests.conftest import calendar_profile

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z, a Monday (fx_ny open)

specs = st.builds(
    BarSpec,
    price=st.sampled_from(PriceSide),
    open_mode=st.sampled_from(OpenMode),
    volume=st.sampled_from(VolumeMode),
)


@st.composite
def tick_streams(draw: st.DrawFn) -> TickBatch:
    """Mostly increasing times with jitter (out-of-order and late ticks), gaps of hours."""
    size = draw(st.integers(min_value=1, max_value=300))
    steps = draw(
        st.lists(
            st.one_of(
                st.integers(min_value=-90_000, max_value=20_000),  # jitter, some late
                st.integers(min_value=0, max_value=4 * 3_600_000),  # quiet gaps
            ),
            min_size=size,
            max_size=size,
        )
    )
    ts = T0 + np.cumsum(np.asarray(steps, dtype=np.int64)) + 90_000 * size
    bids = (
        np.asarray(
            draw(st.lists(st.integers(110_000, 110_400), min_size=size, max_size=size)), np.float64
        )
        / 1e5
    )
    spreads = (
        np.asarray(draw(st.lists(st.integers(0, 30), min_size=size, max_size=size)), np.float64)
        / 1e5
    )
    volumes = np.asarray(
        draw(st.lists(st.floats(0.25, 10.0, width=32), min_size=size, max_size=size)),
        np.float64,
    )
    return TickBatch("EURUSD", ts, bids, np.round(bids + spreads, 5), volumes, volumes[::-1].copy())


def live_bars(
    batch: TickBatch, calendar: TradingCalendar, spec: BarSpec
) -> tuple[dict[Timeframe, list[OhlcvEvent]], int]:
    builder = LiveBuilder({"EURUSD": calendar}, TIMEFRAMES, spec)
    closed: list[OhlcvEvent] = []
    for tick in batch.ticks():
        closed.extend(builder.update(tick) or ())
    closed.extend(builder.close_until(int(batch.ts_ms.max()) + 10 * 86_400_000))
    by_tf: dict[Timeframe, list[OhlcvEvent]] = {tf: [] for tf in TIMEFRAMES}
    for event in closed:
        by_tf[event.tf].append(event)
    return by_tf, builder.late_ticks["EURUSD"]


def as_dicts(events: list[OhlcvEvent]) -> list[dict[str, Any]]:
    return [msgspec.structs.asdict(e) for e in events]


@given(batch=tick_streams(), spec=specs, name=st.sampled_from(["fx_ny", "always_open"]))
def test_same_bars_from_random_streams(batch: TickBatch, spec: BarSpec, name: str) -> None:
    calendar = calendar_profile(name).default
    live, live_late = live_bars(batch, calendar, spec)
    columns, vector_late = build(batch, TIMEFRAMES, calendar, spec)
    assert live_late == vector_late
    for tf in TIMEFRAMES:
        vector = columns[tf].events("EURUSD", tf, complete=False, source=Source.STREAM)
        assert as_dicts(live[tf]) == as_dicts(vector), tf


def test_late_ticks_are_counted_and_never_applied(fx_ny: Any) -> None:
    calendar = fx_ny.default
    builder = LiveBuilder({"EURUSD": calendar}, TIMEFRAMES)
    batch = TickBatch(
        "EURUSD",
        np.asarray([T0 + 61_000, T0 + 5_000, T0 + 62_000, T0 + 60_500], dtype=np.int64),
        np.asarray([1.1, 9.9, 1.2, 1.05]),
        np.asarray([1.1001, 9.9001, 1.2001, 1.0501]),
    )
    for tick in batch.ticks():
        builder.update(tick)
    assert builder.late_ticks["EURUSD"] == 1
    preview = builder.preview("EURUSD", Timeframe.M1)
    assert preview is not None
    # The out-of-order tick at :60.5 s is applied (it is in the current minute) and becomes the
    # open; the late one from the previous minute (9.9) is nowhere.
    assert (preview.open, preview.high, preview.low, preview.close) == (1.05, 1.2, 1.05, 1.2)
    assert preview.tick_count == 3
    assert preview.event_ts == T0 + 62_000
    hour = builder.preview("EURUSD", Timeframe.H1)
    assert hour is not None
    assert hour.high == 1.2
    assert hour.open_ms == T0


def test_a_minute_closed_by_time_takes_no_more_ticks(fx_ny: Any) -> None:
    builder = LiveBuilder({"EURUSD": fx_ny.default}, TIMEFRAMES)
    first = TickBatch("EURUSD", np.asarray([T0 + 1_000]), np.asarray([1.1]), np.asarray([1.1]))
    builder.update(first.ticks()[0])
    closed = builder.close_until(T0 + 60_000)
    assert [e.tf for e in closed] == [Timeframe.M1]
    assert closed[0].complete is False
    assert closed[0].source is Source.STREAM
    late = TickBatch("EURUSD", np.asarray([T0 + 59_000]), np.asarray([1.3]), np.asarray([1.3]))
    assert builder.update(late.ticks()[0]) is None
    assert builder.late_ticks["EURUSD"] == 1
    assert builder.preview("EURUSD", Timeframe.M1) is None
    five = builder.preview("EURUSD", Timeframe.M5)
    assert five is not None
    assert five.close == 1.1
    assert five.tick_count == 1


@pytest.mark.parametrize(
    ("relative", "symbol", "fmt"),
    [
        ("truefx/USDJPY_ticks.csv", "USDJPY", "truefx"),
        ("histdata/quote_tick_data.csv", "EURUSD", "histdata"),
        ("dukascopy", "EURUSD", "dukascopy"),
    ],
)
@pytest.mark.parametrize(
    "spec",
    [
        BarSpec(),
        BarSpec(PriceSide.ASK, OpenMode.PREVIOUS_CLOSE, VolumeMode.SIZE),
        BarSpec(PriceSide.MID, OpenMode.FIRST_TICK, VolumeMode.SIZE),
    ],
    ids=["bid-first-ticks", "ask-prevclose-size", "mid-first-size"],
)
def test_same_bars_from_real_files(
    relative: str, symbol: str, fmt: str, spec: BarSpec, shared_data: Path
) -> None:
    batch = read_ticks(shared_data / relative, symbol, fmt)  # type: ignore[arg-type]
    batch = TickBatch(
        symbol,
        batch.ts_ms,
        batch.bid,
        batch.ask,
        batch.bid_volume if batch.bid_volume is not None else np.ones(len(batch)),
        batch.ask_volume if batch.ask_volume is not None else np.ones(len(batch)),
    )
    calendar = calendar_profile("fx_ny").default
    builder = LiveBuilder({symbol: calendar}, TIMEFRAMES, spec)
    closed: list[OhlcvEvent] = []
    for tick in batch.ticks():
        closed.extend(builder.update(tick) or ())
    closed.extend(builder.close_until(int(batch.ts_ms.max()) + 3 * 86_400_000))
    columns, late = build(batch, TIMEFRAMES, calendar, spec)
    assert late == builder.late_ticks[symbol]
    for tf in TIMEFRAMES:
        live = [e for e in closed if e.tf is tf]
        vector = columns[tf].events(symbol, tf, complete=False, source=Source.STREAM)
        assert as_dicts(live) == as_dicts(vector), tf
        assert len(live) > 0
