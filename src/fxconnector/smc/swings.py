"""Swing highs and lows, confirmed N bars after the swing bar.

Definition (docs/smc.md): a swing high at bar i when `high[i] > high[j]` for every j in i-N..i-1
and `high[i] >= high[j]` for every j in i+1..i+N (strict before, not after: of equal highs the
first is the swing); a swing low mirrored. Anchor = bar i, confirm = bar i+N. Needs N bars before
bar i, so the first N bars of a series are never swings.
Pure: reads only the last 2N+1 bars it was given.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.smc import Direction, SmcHint, SmcKind
from fxconnector.smc.hints import HintMaker


@dataclass(frozen=True, slots=True)
class Swing:
    """A confirmed swing and the bars from it to its confirming bar (inclusive)."""

    hint: SmcHint
    is_high: bool
    window: tuple[OhlcvEvent, ...]

    @property
    def price(self) -> float:
        assert self.hint.price is not None
        return self.hint.price


class SwingDetector:
    """Emits `swing_high`/`swing_low` and hands the confirmed swings on."""

    __slots__ = ("_bars", "_length", "_make")

    def __init__(self, make: HintMaker, length: int) -> None:
        self._make = make
        self._length = length
        self._bars: deque[OhlcvEvent] = deque(maxlen=2 * length + 1)

    def clone(self) -> SwingDetector:
        other = SwingDetector(self._make, self._length)
        other._bars.extend(self._bars)
        return other

    def oldest_open_ms(self) -> int | None:
        """open_ms of the oldest bar a swing confirmed later can be on (None: no bar yet)."""
        return self._bars[0].open_ms if self._bars else None

    def on_bar(self, bar: OhlcvEvent, out: list[SmcHint]) -> list[Swing]:
        """Add `bar`; the swings it confirms (at most one high and one low)."""
        bars = self._bars
        bars.append(bar)
        n = self._length
        if len(bars) < 2 * n + 1:
            return []
        window = tuple(bars)
        middle = window[n]
        before = window[:n]
        after = window[n + 1 :]
        found: list[Swing] = []
        high = middle.high
        if all(high > b.high for b in before) and all(high >= b.high for b in after):
            hint = self._make.level(
                SmcKind.SWING_HIGH, Direction.BEAR, middle.open_ms, bar.close_ms, high
            )
            out.append(hint)
            found.append(Swing(hint, True, window[n:]))
        low = middle.low
        if all(low < b.low for b in before) and all(low <= b.low for b in after):
            hint = self._make.level(
                SmcKind.SWING_LOW, Direction.BULL, middle.open_ms, bar.close_ms, low
            )
            out.append(hint)
            found.append(Swing(hint, False, window[n:]))
        return found
