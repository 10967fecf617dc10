"""Net positions and realised P&L, from fills (pure).

Rules: one net position per trader and symbol (positive long, negative short) with the average
price of its open units. A fill on the other side closes units first, realising
`closed * (fill price - average) * direction`; what is left opens at the fill price. P&L is in
the symbol's quote currency, rounded to `MONEY_DECIMALS` where it is computed, so float noise
(0.30000000000000004) never reaches the journal, Redis, the API or a person; the sums are of
rounded values, so a replay of the journal gives the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from fxconnector.core.model.intent import Side

#: Money (P&L in the quote currency) is kept to this many decimals.
MONEY_DECIMALS: Final = 8


def money(value: float) -> float:
    """`value` rounded to `MONEY_DECIMALS` (never -0.0)."""
    return round(value, MONEY_DECIMALS) + 0.0


@dataclass(frozen=True, slots=True)
class Position:
    units: int = 0
    avg_price: float | None = None
    realised_pnl: float = 0.0


def apply_fill(position: Position, side: Side, units: int, price: float) -> tuple[Position, float]:
    """The position after a fill of `units` on `side` at `price`, and the P&L it realised."""
    signed = side.sign * units
    held = position.units
    if held == 0 or (held > 0) == (signed > 0):
        total = held + signed
        previous = (position.avg_price or 0.0) * abs(held)
        avg = (previous + price * units) / abs(total)
        return Position(total, avg, position.realised_pnl), 0.0
    avg_held = position.avg_price if position.avg_price is not None else price
    closed = min(abs(held), units)
    direction = 1 if held > 0 else -1
    realised = money(closed * (price - avg_held) * direction)
    total = held + signed
    if total == 0:
        avg_after: float | None = None
    elif (total > 0) == (held > 0):
        avg_after = avg_held
    else:
        avg_after = price
    return Position(total, avg_after, money(position.realised_pnl + realised)), realised
