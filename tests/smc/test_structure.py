"""BOS/CHoCH and the order blocks they make (docs/smc.md), on hand-made legs."""

from __future__ import annotations

from fxconnector.core.model.smc import Direction, SmcKind
from tests.smc.bars import highs_lows
from tests.smc.kinds import index_of, of, run

# N = 2. Swing high 1.50 at bar 2 (confirmed at 4), swing low 1.00 at bar 5 (confirmed at 7),
# bar 8 closes above 1.50 (bullish break, first: bos), then a lower swing high 1.60 at 9 is
# followed by a close below the swing low 1.10 at 11 -> bearish break against the bias: choch.
LEG = [
    (1.30, 1.20),  # 0
    (1.40, 1.25),  # 1
    (1.50, 1.30),  # 2 swing high 1.50
    (1.45, 1.20),  # 3
    (1.35, 1.10),  # 4
    (1.30, 1.00),  # 5 swing low 1.00 (the leg's lowest low)
    (1.32, 1.05),  # 6
    (1.40, 1.10),  # 7
    (1.70, 1.45),  # 8 close 1.575 > 1.50: bullish break
    (1.75, 1.60),  # 9 swing high 1.75
    (1.70, 1.50),  # 10
    (1.55, 1.30),  # 11
    (1.20, 0.90),  # 12 close 1.05 is not below 1.00: no break (its low mitigates)
    (1.00, 0.80),  # 13 close 0.90 < 1.00: bearish break
    (0.95, 0.85),  # 14
]


def test_first_break_is_bos_then_a_break_against_the_bias_is_choch() -> None:
    bars = highs_lows(LEG)
    hints = run(bars)
    breaks = of(hints, SmcKind.BOS, SmcKind.CHOCH)
    assert [(h.kind, h.direction, index_of(bars, h.confirm_ts)) for h in breaks] == [
        (SmcKind.BOS, Direction.BULL, 8),
        (SmcKind.CHOCH, Direction.BEAR, 13),
    ]
    bos, choch = breaks
    (high,) = [h for h in of(hints, SmcKind.SWING_HIGH) if h.anchor_ts == bars[2].open_ms]
    assert bos.ref == high.id
    assert bos.price == 1.50
    assert bos.anchor_ts == high.anchor_ts
    assert choch.price == 1.00
    assert index_of(bars, choch.anchor_ts) == 5


def test_each_break_makes_an_order_block_on_the_legs_extreme_bar() -> None:
    bars = highs_lows(LEG)
    hints = run(bars)
    blocks = of(hints, SmcKind.OB)
    bos, choch = of(hints, SmcKind.BOS, SmcKind.CHOCH)
    bull = next(b for b in blocks if b.ref == bos.id)
    # the lowest low between the swing high (bar 2) and the breaking bar (8): bar 5
    assert index_of(bars, bull.anchor_ts) == 5
    assert (bull.bottom, bull.top) == (1.00, 1.30)
    assert bull.direction is Direction.BULL
    assert bull.confirm_ts == bos.confirm_ts
    bear = next(b for b in blocks if b.ref == choch.id)
    # the highest high between the swing low (bar 5) and the breaking bar (13): bar 9
    assert index_of(bars, bear.anchor_ts) == 9
    assert (bear.bottom, bear.top) == (1.60, 1.75)
    mitigated = of(hints, SmcKind.OB_MITIGATED)
    # bar 13's low 0.80 trades through the bullish block's bottom 1.00 (bar 12 first: 0.90)
    assert [(m.ref, index_of(bars, m.confirm_ts)) for m in mitigated] == [(bull.id, 12)]


def test_a_swing_breaks_once() -> None:
    bars = highs_lows([*LEG[:9], (1.80, 1.50), (1.90, 1.60)])
    assert len(of(run(bars), SmcKind.BOS, SmcKind.CHOCH)) == 1
