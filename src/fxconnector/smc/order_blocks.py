"""Order blocks from breaks, and their mitigation.

Definition (docs/smc.md): each break makes one order block from the extreme bar of the leg
that led to it (structure.py): a bullish break gives a bullish block on the lowest-low bar
between the broken swing high and the breaking bar, a bearish break a bearish block on the
highest-high bar; top = that bar's high, bottom = its low. Anchor = that bar, confirm = the
breaking bar, ref = the break. A bar is the block of one break at most per direction (a second
break whose leg ends on the same bar makes no second block); the bars used are forgotten once no
leg can reach back to them. `ob_mitigated` at the first later
bar that trades into the far edge (`low <= bottom` bullish, `high >= top` bearish).
"""

from __future__ import annotations

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.smc import Direction, SmcHint, SmcKind
from fxconnector.smc.hints import HintMaker
from fxconnector.smc.structure import Break
from fxconnector.smc.zones import ZoneBook


class OrderBlocks:
    """Emits `ob` and `ob_mitigated`."""

    __slots__ = ("_make", "_open", "_used")

    def __init__(self, make: HintMaker) -> None:
        self._make = make
        self._open = ZoneBook(inclusive=True)
        self._used: set[tuple[Direction, int]] = set()

    def active(self) -> list[SmcHint]:
        """The zones still open."""
        return self._open.hints()

    def clone(self) -> OrderBlocks:
        other = OrderBlocks(self._make)
        other._open = self._open.clone()
        other._used = set(self._used)
        return other

    def mitigations(self, bar: OhlcvEvent, out: list[SmcHint]) -> None:
        """Blocks that `bar` trades into (checked before `bar`'s own breaks make new ones)."""
        for block in self._open.ended_by(bar):
            out.append(self._make.lifecycle(SmcKind.OB_MITIGATED, block, bar.close_ms))

    def forget_before(self, open_ms: int) -> None:
        """Forget used bars older than `open_ms`: no later leg can reach back to them."""
        if len(self._used) > 64:
            self._used = {key for key in self._used if key[1] >= open_ms}

    def on_break(self, found: Break, out: list[SmcHint]) -> None:
        direction = found.hint.direction
        candle = found.leg_extreme
        if (direction, candle.open_ms) in self._used:
            return
        self._used.add((direction, candle.open_ms))
        hint = self._make.zone(
            SmcKind.OB,
            direction,
            candle.open_ms,
            found.hint.confirm_ts,
            candle.high,
            candle.low,
            ref=found.hint.id,
        )
        out.append(hint)
        self._open.add(hint, candle.low if direction is Direction.BULL else candle.high)
