"""The pre-trade decision on one intent: Allow, or Deny with a stable reason code.

Rules: a pure function of the intent, the trader's state (trading state, position, working
orders, recent orders, today's realised P&L), the latest quote and `now`; it reads no clock and
changes nothing. Checks run in a fixed order and the first failing one is the reason, so the same
inputs always give the same code. Exposure is counted worst-case: every working order (including
an UNKNOWN one) as if it filled completely.

An order *reduces* exposure when it is on the other side of the position and, with every working
order on its side, cannot take the position through zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.model.exec_event import RiskReason, TradingState
from fxconnector.core.model.intent import OrderIntent, OrderType, Side
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import iso_utc
from fxconnector.core.validation.intent import intent_problems
from fxconnector.execution.risk.limits import RiskLimits


@dataclass(frozen=True, slots=True)
class Allow:
    """The intent may be sent."""

    @property
    def allowed(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Deny:
    """The intent is refused for `reason`; `detail` says it in words for a person."""

    reason: RiskReason
    detail: str

    @property
    def allowed(self) -> bool:
        return False


Decision = Allow | Deny
ALLOW = Allow()


@dataclass(frozen=True, slots=True)
class Exposure:
    """A trader's net position in a symbol and the unfilled units of its working orders."""

    position: int = 0
    working_buy: int = 0
    working_sell: int = 0

    def working(self, side: Side) -> int:
        return self.working_buy if side is Side.BUY else self.working_sell

    def worst(self, side: Side, extra: int = 0) -> int:
        """The position if every working order of `side` (and `extra` more units) filled."""
        return self.position + side.sign * (self.working(side) + extra)

    def reduces(self, side: Side, units: int) -> bool:
        """Whether `units` on `side` only bring the position towards zero."""
        if self.position == 0 or (self.position > 0) == (side is Side.BUY):
            return False
        return self.working(side) + units <= abs(self.position)


@dataclass(frozen=True, slots=True)
class TraderView:
    """What the validator needs to know of a trader's state in one symbol."""

    state: TradingState
    exposure: Exposure
    orders_last_minute: int
    day_realised_pnl: float


def reference_price(intent: OrderIntent, quote: Tick) -> float:
    """The price an order is valued at: its own for a limit or stop, the touch for a market."""
    if intent.type is not OrderType.MARKET and intent.price is not None:
        return intent.price
    return quote.ask if intent.side is Side.BUY else quote.bid


def check_intent(
    intent: OrderIntent,
    view: TraderView,
    *,
    limits: RiskLimits,
    calendar: TradingCalendar,
    quote: Tick | None,
    now_ms: int,
) -> Decision:
    """Allow or Deny(reason) for `intent` at `now_ms`."""
    trader = limits.traders.get(intent.trader)
    if trader is None:
        return Deny(RiskReason.UNKNOWN_TRADER, f"trader {intent.trader!r} has no limits")
    symbol = trader.symbols.get(intent.symbol)
    if symbol is None:
        return Deny(
            RiskReason.SYMBOL_NOT_ALLOWED,
            f"trader {intent.trader!r} may not trade {intent.symbol}",
        )
    problems = intent_problems(intent)
    if problems:
        return Deny(RiskReason.INVALID_INTENT, "; ".join(p.message for p in problems))
    intent_age_ms = now_ms - intent.ts
    if intent_age_ms > limits.max_intent_age_ms:
        return Deny(
            RiskReason.STALE_INTENT,
            f"the intent's ts {iso_utc(intent.ts)} is {intent_age_ms} ms old (bound "
            f"{limits.max_intent_age_ms} ms): send it again with a current ts, or without one",
        )
    if view.state is TradingState.HALTED:
        return Deny(RiskReason.TRADING_HALTED, "trading is halted: only cancels are accepted")
    if not calendar.is_open(now_ms):
        return Deny(RiskReason.MARKET_CLOSED, f"{intent.symbol} is closed ({calendar.tag})")
    if quote is None:
        return Deny(RiskReason.NO_PRICE, f"no price of {intent.symbol} yet")
    age_ms = now_ms - quote.ts_ms
    if age_ms > limits.max_price_age_ms:
        return Deny(
            RiskReason.STALE_PRICE,
            f"the last {intent.symbol} price is {age_ms} ms old "
            f"(bound {limits.max_price_age_ms} ms)",
        )
    exposure = view.exposure
    reduces = exposure.reduces(intent.side, intent.units)
    if view.state is TradingState.REDUCING and not reduces:
        return Deny(
            RiskReason.REDUCING_ONLY,
            f"trading is reducing-only and this order does not reduce the position "
            f"{exposure.position} (working {exposure.working(intent.side)} on its side)",
        )
    if intent.units > symbol.max_units_per_order:
        return Deny(
            RiskReason.MAX_UNITS_PER_ORDER,
            f"{intent.units} units > {symbol.max_units_per_order} per order",
        )
    before = exposure.worst(intent.side)
    after = exposure.worst(intent.side, intent.units)
    grows = abs(after) > abs(before)
    if grows and abs(after) > symbol.max_open_units:
        return Deny(
            RiskReason.MAX_OPEN_POSITION,
            f"worst-case position {after} would pass {symbol.max_open_units} units",
        )
    price = reference_price(intent, quote)
    if grows and abs(after) * price > symbol.max_notional:
        return Deny(
            RiskReason.MAX_NOTIONAL,
            f"worst-case notional {abs(after) * price:.2f} would pass {symbol.max_notional:.2f}",
        )
    if view.orders_last_minute >= trader.max_orders_per_minute:
        return Deny(
            RiskReason.MAX_ORDERS_PER_MINUTE,
            f"{view.orders_last_minute} orders in the last minute "
            f"(bound {trader.max_orders_per_minute})",
        )
    if not reduces and -view.day_realised_pnl >= symbol.max_daily_loss:
        return Deny(
            RiskReason.DAILY_LOSS_LIMIT,
            f"realised loss today {-view.day_realised_pnl:.2f} reached "
            f"{symbol.max_daily_loss:.2f}: only orders that reduce the position",
        )
    return ALLOW
