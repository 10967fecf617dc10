"""Tick rails: one reason per bad tick, the same from the scalar and the vectorised form."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.errors import ContractViolation
from fxconnector.core.model.tick import TickBatch
from fxconnector.core.validation.ticks import (
    REASON_ORDER,
    RejectReason,
    TickRails,
    check_batch,
    check_tick,
    count_reasons,
)

RAILS = TickRails(frozenset({"EURUSD"}), max_spread_inversion=0.0001)
T0 = 1_709_632_800_000  # 2024-03-05T10:00:00Z
ODD = [0.0, -1.0, math.nan, math.inf, -math.inf, 1e308, 1e-300, 5e-7, 2e7, 1e7, 1e-6]
prices = st.one_of(st.floats(min_value=0.5, max_value=2.0), st.sampled_from(ODD))
volumes = st.one_of(
    st.floats(min_value=0, max_value=1e6),
    st.sampled_from([-5.0, -0.0, 1e38, 1e12, 1.1e12, math.nan, math.inf]),
)


def _always_open(ts: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    return np.ones(ts.shape, dtype=np.bool_)


@pytest.mark.parametrize(
    ("bid", "ask", "bid_volume", "ask_volume", "reason"),
    [
        (1.1, 1.1002, None, None, None),
        (1e308, 1e308, None, None, RejectReason.PRICE_OUT_OF_RANGE),
        (1.1, 1e308, None, None, RejectReason.PRICE_OUT_OF_RANGE),
        (1e-300, 1e-300, None, None, RejectReason.PRICE_OUT_OF_RANGE),
        (math.inf, 1.1, None, None, RejectReason.BAD_PRICE),
        (1.1, 1.1002, -5.0, 1.0, RejectReason.BAD_VOLUME),
        (1.1, 1.1002, 1.0, 1e38, RejectReason.BAD_VOLUME),
        (1.1, 1.1002, math.nan, 1.0, RejectReason.BAD_VOLUME),
        (1.1, 1.1002, 0.0, 1e12, None),
    ],
)
def test_each_rail_has_its_reason(
    bid: float,
    ask: float,
    bid_volume: float | None,
    ask_volume: float | None,
    reason: RejectReason | None,
) -> None:
    got = check_tick(RAILS, "EURUSD", bid, ask, T0, T0, True, bid_volume, ask_volume)
    assert got is reason


def test_the_band_is_configurable() -> None:
    rails = TickRails(frozenset({"USDJPY"}), min_price=50.0, max_price=300.0, max_volume=10.0)
    assert check_tick(rails, "USDJPY", 150.0, 150.01, T0, T0, True) is None
    assert check_tick(rails, "USDJPY", 1.5, 1.51, T0, T0, True) is RejectReason.PRICE_OUT_OF_RANGE
    assert check_tick(rails, "USDJPY", 150.0, 150.01, T0, T0, True, 11.0, 1.0) is (
        RejectReason.BAD_VOLUME
    )


@pytest.mark.parametrize(
    ("min_price", "max_price", "max_volume"),
    [(0.0, 1.0, 1.0), (2.0, 1.0, 1.0), (1.0, math.inf, 1.0), (1.0, 2.0, -1.0), (math.nan, 1, 1)],
)
def test_rails_that_cannot_hold_are_refused(
    min_price: float, max_price: float, max_volume: float
) -> None:
    with pytest.raises(ContractViolation, match="tick rails"):
        TickRails(frozenset(), min_price=min_price, max_price=max_price, max_volume=max_volume)


@given(
    rows=st.lists(
        st.tuples(prices, prices, volumes, volumes, st.integers(-86_400_000, 86_400_000)),
        min_size=1,
        max_size=30,
    ),
    sizes=st.booleans(),
)
def test_vectorised_form_gives_the_same_reason(
    rows: list[tuple[float, float, float, float, int]], sizes: bool
) -> None:
    batch = TickBatch(
        symbol="EURUSD",
        ts_ms=np.array([T0 + r[4] for r in rows], dtype=np.int64),
        bid=np.array([r[0] for r in rows]),
        ask=np.array([r[1] for r in rows]),
        bid_volume=np.array([r[2] for r in rows]) if sizes else None,
        ask_volume=np.array([r[3] for r in rows]) if sizes else None,
    )
    rails = TickRails(
        frozenset({"EURUSD"}), max_spread_inversion=0.0001, epoch_rail_ms=T0 - 43_200_000
    )
    codes = check_batch(rails, batch, T0, _always_open)
    for code, (bid, ask, bid_volume, ask_volume, step) in zip(codes, rows, strict=True):
        expected = check_tick(
            rails,
            "EURUSD",
            bid,
            ask,
            T0 + step,
            T0,
            True,
            bid_volume if sizes else None,
            ask_volume if sizes else None,
        )
        assert (REASON_ORDER[code] if code >= 0 else None) is expected
    assert sum(count_reasons(codes).values()) == int((codes >= 0).sum())
