"""Fair value gaps and their mitigation (docs/smc.md)."""

from __future__ import annotations

from fxconnector.core.model.smc import Direction, SmcKind
from tests.smc.bars import rows
from tests.smc.kinds import index_of, of, run


def test_bullish_gap_between_bar_before_and_bar_after_then_mitigated_at_its_bottom() -> None:
    bars = rows(
        [
            (1.00, 1.10, 0.95, 1.08),  # 0: high 1.10
            (1.08, 1.30, 1.07, 1.28),  # 1: the middle bar
            (1.28, 1.35, 1.15, 1.30),  # 2: low 1.15 > 1.10: gap [1.10, 1.15]
            (1.30, 1.32, 1.12, 1.20),  # 3: into the gap, not its bottom
            (1.20, 1.21, 1.10, 1.11),  # 4: low reaches 1.10: mitigated
        ]
    )
    hints = run(bars)
    (gap,) = of(hints, SmcKind.FVG)
    assert (gap.direction, gap.bottom, gap.top) == (Direction.BULL, 1.10, 1.15)
    assert index_of(bars, gap.anchor_ts) == 1
    assert index_of(bars, gap.confirm_ts) == 2
    (done,) = of(hints, SmcKind.FVG_MITIGATED)
    assert done.ref == gap.id
    assert index_of(bars, done.confirm_ts) == 4
    assert (done.anchor_ts, done.top, done.bottom) == (gap.anchor_ts, gap.top, gap.bottom)


def test_bearish_gap_mirrors_it() -> None:
    bars = rows(
        [
            (1.30, 1.32, 1.20, 1.21),  # 0: low 1.20
            (1.21, 1.22, 1.00, 1.01),  # 1
            (1.01, 1.15, 0.98, 1.00),  # 2: high 1.15 < 1.20: gap [1.15, 1.20]
            (1.00, 1.20, 0.99, 1.19),  # 3: high reaches 1.20: mitigated
        ]
    )
    hints = run(bars)
    (gap,) = of(hints, SmcKind.FVG)
    assert (gap.direction, gap.bottom, gap.top) == (Direction.BEAR, 1.15, 1.20)
    (done,) = of(hints, SmcKind.FVG_MITIGATED)
    assert index_of(bars, done.confirm_ts) == 3


def test_touching_is_no_gap_and_the_confirming_bar_never_mitigates() -> None:
    touching = rows([(1.0, 1.1, 0.9, 1.0), (1.0, 1.3, 1.0, 1.2), (1.2, 1.3, 1.1, 1.2)])
    assert not of(run(touching), SmcKind.FVG)
    hints = run(rows([(1.0, 1.1, 0.9, 1.0), (1.0, 1.3, 1.0, 1.2), (1.2, 1.3, 1.15, 1.2)]))
    assert len(of(hints, SmcKind.FVG)) == 1
    assert not of(hints, SmcKind.FVG_MITIGATED)
