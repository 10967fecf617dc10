"""Risk limits per trader and symbol, and the trading day they reset on.

Rules: frozen values built once (by the config loader) and handed to the core; a limit that is
not positive is a bug in the caller and raises. Money limits are in the symbol's quote currency
(notional of EURUSD in USD, of USDJPY in JPY): converting to an account currency would need rates
the risk core must not trust blindly, so every money limit is per symbol. The trading day is the
calendar's (17:00 New York by default): daily P&L resets at its start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Protocol

from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.errors import ContractViolation

MINUTE_MS: Final = 60_000


@dataclass(frozen=True, slots=True)
class SymbolLimits:
    """One trader's limits in one symbol.

    - `max_units_per_order`: the size of one order;
    - `max_open_units`: the net position, counting every working order as if it filled;
    - `max_notional`: that worst-case position times the price (quote currency);
    - `max_daily_loss`: realised loss in the trading day (quote currency) past which the trader
      is HALTED and, after a resume, only orders that reduce exposure pass.
    """

    max_units_per_order: int
    max_open_units: int
    max_notional: float
    max_daily_loss: float

    def __post_init__(self) -> None:
        for name in ("max_units_per_order", "max_open_units", "max_notional", "max_daily_loss"):
            if not getattr(self, name) > 0:
                raise ContractViolation(f"{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class TraderLimits:
    """A trader's symbols (any other symbol is denied) and order rate."""

    symbols: Mapping[str, SymbolLimits]
    max_orders_per_minute: int

    def __post_init__(self) -> None:
        if self.max_orders_per_minute < 1:
            raise ContractViolation(
                f"max_orders_per_minute must be positive, got {self.max_orders_per_minute}"
            )
        object.__setattr__(self, "symbols", MappingProxyType(dict(self.symbols)))


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Every trader's limits (an unknown trader is denied), the price-age bound and the
    intent-age bound (an intent whose `ts` is older than it is denied: a queued or replayed
    intent must not trade on a decision made long ago)."""

    traders: Mapping[str, TraderLimits]
    max_price_age_ms: int = 5_000
    max_intent_age_ms: int = 60_000

    def __post_init__(self) -> None:
        for name in ("max_price_age_ms", "max_intent_age_ms"):
            if getattr(self, name) < 1:
                raise ContractViolation(f"{name} must be positive, got {getattr(self, name)}")
        object.__setattr__(self, "traders", MappingProxyType(dict(self.traders)))

    def for_symbol(self, trader: str, symbol: str) -> SymbolLimits | None:
        """The limits of `trader` in `symbol`, or None when either is not configured."""
        limits = self.traders.get(trader)
        return None if limits is None else limits.symbols.get(symbol)


class CalendarLookup(Protocol):
    """Where a symbol's calendar comes from (`core.calendar.CalendarProfile` is one)."""

    def for_symbol(self, symbol: str) -> TradingCalendar: ...


def trading_day(ts_ms: int, calendar: TradingCalendar) -> int:
    """Start (epoch ms) of the trading day that contains `ts_ms`: where daily P&L resets."""
    return calendar.day_grid.day_open(ts_ms)
