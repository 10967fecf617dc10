"""Breaks of structure (`bos`) and changes of character (`choch`).

Definition (docs/smc.md): the structure keeps the last confirmed swing high and the last
confirmed swing low that are not broken yet (a newer confirmed swing replaces an older one). A
bar whose close is strictly above that swing high breaks it (bullish), strictly below that swing
low breaks it (bearish); each swing breaks once. The break is `choch` when it is against the
current bias (the direction of the last break), `bos` otherwise (also the very first break).
Anchor = the swing's bar, confirm = the breaking bar, price = the swing level, ref = the swing.
Within one bar breaks are checked before the swings that bar confirms (a swing confirmed at bar t
cannot be broken by bar t: its level is beyond bar t's range).

Order blocks come from each break: while a swing waits, the structure tracks the extreme bar of
the leg from the swing bar to the bar before the break (lowest low for a swing high, highest high
for a swing low; of equal extremes the latest bar). See order_blocks.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.smc import Direction, SmcHint, SmcKind
from fxconnector.smc.hints import HintMaker
from fxconnector.smc.swings import Swing


@dataclass(frozen=True, slots=True)
class Break:
    """A break and the extreme bar of the leg before it (the order block candle)."""

    hint: SmcHint
    leg_extreme: OhlcvEvent


@dataclass(slots=True)
class _Waiting:
    swing: SmcHint
    level: float
    extreme: OhlcvEvent


class StructureTracker:
    """Emits `bos`/`choch`; returns the breaks for the order blocks."""

    __slots__ = ("_bias", "_high", "_low", "_make")

    def __init__(self, make: HintMaker) -> None:
        self._make = make
        self._high: _Waiting | None = None
        self._low: _Waiting | None = None
        self._bias: Direction | None = None

    def clone(self) -> StructureTracker:
        other = StructureTracker(self._make)
        other._bias = self._bias
        if self._high is not None:
            other._high = _Waiting(self._high.swing, self._high.level, self._high.extreme)
        if self._low is not None:
            other._low = _Waiting(self._low.swing, self._low.level, self._low.extreme)
        return other

    @property
    def bias(self) -> Direction | None:
        return self._bias

    def active(self) -> list[SmcHint]:
        """The confirmed swings still waiting for a break."""
        return [w.swing for w in (self._high, self._low) if w is not None]

    def oldest_leg_ms(self) -> int | None:
        """open_ms of the oldest bar a waiting swing's leg starts from (None: none waits)."""
        starts = [w.swing.anchor_ts for w in (self._high, self._low) if w is not None]
        return min(starts) if starts else None

    def on_bar(self, bar: OhlcvEvent, out: list[SmcHint]) -> list[Break]:
        """Breaks made by `bar`'s close; then `bar` extends the legs of the waiting swings."""
        breaks: list[Break] = []
        high, low = self._high, self._low
        if high is not None and bar.close > high.level:
            breaks.append(self._break(high, Direction.BULL, bar, out))
            self._high = high = None
        if low is not None and bar.close < low.level:
            breaks.append(self._break(low, Direction.BEAR, bar, out))
            self._low = low = None
        if high is not None and bar.low <= high.extreme.low:
            high.extreme = bar
        if low is not None and bar.high >= low.extreme.high:
            low.extreme = bar
        return breaks

    def on_swing(self, swing: Swing) -> None:
        """A newly confirmed swing replaces the waiting one of its side."""
        extreme = swing.window[0]
        if swing.is_high:
            for bar in swing.window[1:]:
                if bar.low <= extreme.low:
                    extreme = bar
            self._high = _Waiting(swing.hint, swing.price, extreme)
        else:
            for bar in swing.window[1:]:
                if bar.high >= extreme.high:
                    extreme = bar
            self._low = _Waiting(swing.hint, swing.price, extreme)

    def _break(
        self, waiting: _Waiting, direction: Direction, bar: OhlcvEvent, out: list[SmcHint]
    ) -> Break:
        kind = (
            SmcKind.CHOCH if self._bias is not None and self._bias is not direction else SmcKind.BOS
        )
        self._bias = direction
        hint = self._make.level(
            kind,
            direction,
            waiting.swing.anchor_ts,
            bar.close_ms,
            waiting.level,
            ref=waiting.swing.id,
        )
        out.append(hint)
        return Break(hint, waiting.extreme)
