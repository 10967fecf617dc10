"""Fair value gaps and their mitigation.

Definition (docs/smc.md), middle bar i: bullish when `low[i+1] > high[i-1]` (bottom `high[i-1]`,
top `low[i+1]`), bearish when `high[i+1] < low[i-1]` (bottom `high[i+1]`, top `low[i-1]`);
anchor = bar i, confirm = bar i+1. `fvg_mitigated` at the first later bar that trades into the far
edge: a bullish gap when a low reaches its bottom (`low <= bottom`), a bearish gap when a high
reaches its top (`high >= top`). The bars are consecutive final bars: a closed market between
them does not matter.
"""

from __future__ import annotations

from collections import deque

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.smc import Direction, SmcHint, SmcKind
from fxconnector.smc.hints import HintMaker
from fxconnector.smc.zones import ZoneBook


class FvgDetector:
    """Emits `fvg` and `fvg_mitigated`."""

    __slots__ = ("_bars", "_make", "_open")

    def __init__(self, make: HintMaker) -> None:
        self._make = make
        self._bars: deque[OhlcvEvent] = deque(maxlen=3)
        self._open = ZoneBook(inclusive=True)

    def active(self) -> list[SmcHint]:
        """The zones still open."""
        return self._open.hints()

    def clone(self) -> FvgDetector:
        other = FvgDetector(self._make)
        other._bars.extend(self._bars)
        other._open = self._open.clone()
        return other

    def on_bar(self, bar: OhlcvEvent, out: list[SmcHint]) -> None:
        make = self._make
        for gap in self._open.ended_by(bar):
            out.append(make.lifecycle(SmcKind.FVG_MITIGATED, gap, bar.close_ms))
        bars = self._bars
        bars.append(bar)
        if len(bars) < 3:
            return
        first, middle = bars[0], bars[1]
        if bar.low > first.high:
            hint = make.zone(
                SmcKind.FVG, Direction.BULL, middle.open_ms, bar.close_ms, bar.low, first.high
            )
            out.append(hint)
            self._open.add(hint, first.high)
        elif bar.high < first.low:
            hint = make.zone(
                SmcKind.FVG, Direction.BEAR, middle.open_ms, bar.close_ms, first.low, bar.high
            )
            out.append(hint)
            self._open.add(hint, first.low)
