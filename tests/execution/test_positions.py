"""Positions and realised P&L from fills."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.model.intent import Side
from fxconnector.execution.positions import MONEY_DECIMALS, Position, apply_fill


def test_open_add_reduce_flip_close() -> None:
    pos, pnl = apply_fill(Position(), Side.BUY, 100, 1.10)
    assert (pos.units, pos.avg_price, pnl) == (100, 1.10, 0.0)
    pos, pnl = apply_fill(pos, Side.BUY, 100, 1.20)
    assert pos.units == 200
    assert pos.avg_price == pytest.approx(1.15)
    pos, pnl = apply_fill(pos, Side.SELL, 50, 1.25)
    assert pnl == pytest.approx(50 * 0.10)
    assert pos.avg_price == pytest.approx(1.15)
    pos, pnl = apply_fill(pos, Side.SELL, 250, 1.05)  # closes 150, opens 100 short at 1.05
    assert pnl == pytest.approx(150 * (1.05 - 1.15))
    assert (pos.units, pos.avg_price) == (-100, 1.05)
    pos, pnl = apply_fill(pos, Side.BUY, 100, 1.00)
    assert pnl == pytest.approx(100 * 0.05)
    assert (pos.units, pos.avg_price) == (0, None)
    assert pos.realised_pnl == pytest.approx(5.0 - 15.0 + 5.0)


@given(
    fills=st.lists(
        st.tuples(st.sampled_from(list(Side)), st.integers(1, 1_000), st.floats(0.5, 2.0)),
        max_size=30,
    )
)
def test_flat_at_the_end_means_realised_equals_cash(fills: list[tuple[Side, int, float]]) -> None:
    pos = Position()
    cash = 0.0
    for side, units, price in fills:
        pos, _ = apply_fill(pos, side, units, price)
        cash -= side.sign * units * price
    if pos.units:
        closing = Side.SELL if pos.units > 0 else Side.BUY
        cash -= closing.sign * abs(pos.units) * 1.0
        pos, _ = apply_fill(pos, closing, abs(pos.units), 1.0)
    assert pos.units == 0
    assert pos.realised_pnl == pytest.approx(cash, abs=1e-6)


def test_money_carries_no_float_noise() -> None:
    # 1000 * (1.1003 - 1.1) is 0.30000000000000115 in floats: a person reads 0.3.
    pos, _ = apply_fill(Position(), Side.BUY, 1_000, 1.1)
    pos, pnl = apply_fill(pos, Side.SELL, 1_000, 1.1003)
    assert (pnl, pos.realised_pnl) == (0.3, 0.3)
    total = pos
    for _ in range(3):  # sums of rounded values stay rounded: 0.3 + 0.3 + ... never drifts
        total, _ = apply_fill(total, Side.BUY, 1_000, 1.1)
        total, _ = apply_fill(total, Side.SELL, 1_000, 1.1003)
    assert repr(total.realised_pnl) == "1.2"
    # A loss that rounds to nothing is 0.0, not -0.0.
    flat, pnl = apply_fill(Position(1, 1.1000000001), Side.SELL, 1, 1.1)
    assert (repr(pnl), repr(flat.realised_pnl)) == ("0.0", "0.0")


@given(
    fills=st.lists(
        st.tuples(st.sampled_from(list(Side)), st.integers(1, 100_000), st.floats(0.5, 200.0)),
        max_size=30,
    )
)
def test_realised_pnl_is_always_rounded_to_money_decimals(
    fills: list[tuple[Side, int, float]],
) -> None:
    pos = Position()
    for side, units, price in fills:
        pos, pnl = apply_fill(pos, side, units, price)
        assert round(pnl, MONEY_DECIMALS) == pnl
        assert round(pos.realised_pnl, MONEY_DECIMALS) == pos.realised_pnl
