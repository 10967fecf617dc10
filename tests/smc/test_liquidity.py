"""Liquidity pools of equal highs/lows within a causal ATR tolerance, and their sweeps."""

from __future__ import annotations

from fxconnector.core.model.smc import Direction, SmcKind
from fxconnector.smc import SmcConfig
from fxconnector.smc.liquidity import Atr
from tests.smc.bars import highs_lows, rows
from tests.smc.kinds import index_of, of, run

CONFIG = SmcConfig(swing_length=2, atr_length=3, liquidity_tolerance_atr=0.5)
# Ranges are 0.10 each: ATR 0.10 once 3 bars are seen, tolerance 0.05.
EQUAL_HIGHS = [
    (1.10, 1.00),  # 0
    (1.12, 1.02),  # 1
    (1.20, 1.10),  # 2 swing high 1.20 (confirmed at 4)
    (1.15, 1.05),  # 3
    (1.10, 1.00),  # 4
    (1.14, 1.04),  # 5
    (1.23, 1.13),  # 6 swing high 1.23, within 0.05 of 1.20 (confirmed at 8): a pool
    (1.18, 1.08),  # 7
    (1.12, 1.02),  # 8
    (1.20, 1.10),  # 9  high 1.20 < 1.23: not swept
    (1.24, 1.14),  # 10 high 1.24 > 1.23: swept
]


def test_two_swing_highs_within_tolerance_make_a_pool_swept_beyond_its_top() -> None:
    bars = highs_lows(EQUAL_HIGHS)
    hints = run(bars, CONFIG)
    (pool,) = [h for h in of(hints, SmcKind.LIQUIDITY) if h.direction is Direction.BEAR]
    assert (pool.bottom, pool.top) == (1.20, 1.23)
    assert index_of(bars, pool.anchor_ts) == 2
    assert index_of(bars, pool.confirm_ts) == 8
    (swept,) = [h for h in of(hints, SmcKind.LIQUIDITY_SWEPT) if h.ref == pool.id]
    assert index_of(bars, swept.confirm_ts) == 10


def test_swings_further_apart_than_the_tolerance_make_no_pool() -> None:
    far = [*EQUAL_HIGHS[:6], (1.30, 1.20), (1.25, 1.15), (1.19, 1.09)]
    pools = of(run(highs_lows(far), CONFIG), SmcKind.LIQUIDITY)
    assert not [h for h in pools if h.direction is Direction.BEAR]


def test_atr_is_the_mean_true_range_of_the_last_bars_only() -> None:
    atr = Atr(2)
    bars = rows([(1.0, 1.1, 0.9, 1.0), (1.0, 1.05, 0.95, 1.0), (1.3, 1.4, 1.3, 1.35)])
    atr.on_bar(bars[0])
    assert atr.value is None  # not before `length` bars
    atr.on_bar(bars[1])
    assert atr.value is not None
    assert abs(atr.value - (0.2 + 0.1) / 2) < 1e-12
    atr.on_bar(bars[2])  # true range 1.4 - prev close 1.0 = 0.4 (a gap up)
    assert atr.value is not None
    assert abs(atr.value - (0.1 + 0.4) / 2) < 1e-12
