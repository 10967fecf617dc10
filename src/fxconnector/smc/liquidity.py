"""Liquidity pools of equal highs or lows, and their sweeps; the causal ATR that sizes them.

Definition (docs/smc.md): ATR at bar t is the mean true range of the last `atr_length` bars up
to t (`max(high-low, |high-prev_close|, |low-prev_close|)`; the first bar's is high-low), known
only from bar `atr_length - 1` on. When a swing high is confirmed at bar t, it is compared with
the last `liquidity_lookback` confirmed swing highs not yet in a pool, newest first; the first
within `liquidity_tolerance_atr * ATR(t)` makes a pool with it: `liquidity`, direction bear,
top = the higher, bottom = the lower of the two, anchor = the earlier swing, confirm = bar t.
Both swings leave the candidates; a swing with no partner becomes one. Lows mirrored (bull).
`liquidity_swept` at the first later bar that trades beyond the pool: `high > top` (bear),
`low < bottom` (bull). Nothing is sized on the whole data set: only bars up to t are used.
"""

from __future__ import annotations

from collections import deque

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.smc import Direction, SmcHint, SmcKind
from fxconnector.smc.hints import HintMaker
from fxconnector.smc.swings import Swing
from fxconnector.smc.zones import ZoneBook


class Atr:
    """Mean true range over the last `length` bars."""

    __slots__ = ("_length", "_prev_close", "_ranges")

    def __init__(self, length: int) -> None:
        self._length = length
        self._ranges: deque[float] = deque(maxlen=length)
        self._prev_close: float | None = None

    def clone(self) -> Atr:
        other = Atr(self._length)
        other._ranges.extend(self._ranges)
        other._prev_close = self._prev_close
        return other

    def on_bar(self, bar: OhlcvEvent) -> None:
        prev = self._prev_close
        if prev is None:
            true_range = bar.high - bar.low
        else:
            true_range = max(bar.high - bar.low, abs(bar.high - prev), abs(bar.low - prev))
        self._ranges.append(true_range)
        self._prev_close = bar.close

    @property
    def value(self) -> float | None:
        """The ATR, or None before `length` bars."""
        if len(self._ranges) < self._length:
            return None
        return sum(self._ranges) / self._length


class LiquidityPools:
    """Emits `liquidity` and `liquidity_swept`."""

    __slots__ = ("_highs", "_lookback", "_lows", "_make", "_open", "_tolerance")

    def __init__(self, make: HintMaker, tolerance_atr: float, lookback: int) -> None:
        self._make = make
        self._tolerance = tolerance_atr
        self._lookback = lookback
        self._highs: list[SmcHint] = []
        self._lows: list[SmcHint] = []
        self._open = ZoneBook(inclusive=False)

    def active(self) -> list[SmcHint]:
        """The zones still open."""
        return self._open.hints()

    def clone(self) -> LiquidityPools:
        other = LiquidityPools(self._make, self._tolerance, self._lookback)
        other._highs = list(self._highs)
        other._lows = list(self._lows)
        other._open = self._open.clone()
        return other

    def sweeps(self, bar: OhlcvEvent, out: list[SmcHint]) -> None:
        """Pools `bar` trades beyond (checked before the pools `bar` confirms)."""
        for pool in self._open.ended_by(bar):
            out.append(self._make.lifecycle(SmcKind.LIQUIDITY_SWEPT, pool, bar.close_ms))

    def on_swing(self, swing: Swing, atr: float | None, out: list[SmcHint]) -> None:
        candidates = self._highs if swing.is_high else self._lows
        price = swing.price
        if atr is not None:
            tolerance = self._tolerance * atr
            for index in range(len(candidates) - 1, -1, -1):
                earlier = candidates[index]
                assert earlier.price is not None
                if abs(price - earlier.price) <= tolerance:
                    del candidates[index]
                    self._pool(earlier, swing, out)
                    return
        candidates.append(swing.hint)
        if len(candidates) > self._lookback:
            del candidates[0]

    def _pool(self, earlier: SmcHint, swing: Swing, out: list[SmcHint]) -> None:
        assert earlier.price is not None
        top = max(earlier.price, swing.price)
        bottom = min(earlier.price, swing.price)
        direction = Direction.BEAR if swing.is_high else Direction.BULL
        hint = self._make.zone(
            SmcKind.LIQUIDITY, direction, earlier.anchor_ts, swing.hint.confirm_ts, top, bottom
        )
        out.append(hint)
        self._open.add(hint, top if swing.is_high else bottom)
