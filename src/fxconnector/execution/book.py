"""The execution state the events build: orders, denials, positions, daily P&L, order-rate
windows, trading states (pure).

Rules: `Book.apply(event)` is the only way this state changes, live and on replay alike (the core
emits an event and applies it; a restart applies the journal), so a replay rebuilds exactly the
state the live core had. An event out of `seq` order, or one about an order the book does not
hold, is a ContractViolation: the journal is damaged, and guessing would be worse.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Final

from fxconnector.core.errors import ContractViolation
from fxconnector.core.model.exec_event import (
    ALL_TRADERS,
    Decision,
    ExecEvent,
    FillEvent,
    OrderEvent,
    OrderState,
    PositionEvent,
    RiskEvent,
    TradingState,
)
from fxconnector.core.model.intent import Side
from fxconnector.execution import orders as sm
from fxconnector.execution.orders import Order
from fxconnector.execution.positions import Position
from fxconnector.execution.risk.limits import MINUTE_MS
from fxconnector.execution.risk.validator import Exposure

_STATE_RANK: Final = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


@dataclass(slots=True)
class DayPnl:
    """Realised P&L of the trading day that starts at `day_open_ms`."""

    day_open_ms: int = 0
    pnl: float = 0.0


@dataclass(slots=True)
class Scope:
    """The trading state of a trader or of everyone, and why and since when."""

    state: TradingState = TradingState.ACTIVE
    reason: str = ""
    since_ms: int = 0


@dataclass(slots=True)
class Book:
    """Everything the events build."""

    seq: int = 0
    orders: dict[str, Order] = field(default_factory=dict)
    #: Ids of the orders that are not done, in submission order (what ticks and risk look at).
    working: dict[str, None] = field(default_factory=dict)
    denied: dict[str, RiskEvent] = field(default_factory=dict)
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    day_pnl: dict[tuple[str, str], DayPnl] = field(default_factory=dict)
    recent: dict[str, deque[int]] = field(default_factory=dict)
    scopes: dict[str, Scope] = field(default_factory=dict)

    # --- reading -----------------------------------------------------------------------------

    def open_orders(self) -> list[Order]:
        orders = self.orders
        return [orders[intent_id] for intent_id in self.working]

    def position(self, trader: str, symbol: str) -> Position:
        return self.positions.get((trader, symbol), Position())

    def exposure(self, trader: str, symbol: str) -> Exposure:
        """The position and the unfilled units of the working orders, per side."""
        buy = sell = 0
        for order in self.open_orders():
            intent = order.intent
            if intent.trader == trader and intent.symbol == symbol:
                if intent.side is Side.BUY:
                    buy += order.remaining_units
                else:
                    sell += order.remaining_units
        return Exposure(self.position(trader, symbol).units, buy, sell)

    def scope_state(self, scope: str) -> TradingState:
        return self.scopes.get(scope, Scope()).state

    def trading_state(self, trader: str = ALL_TRADERS) -> TradingState:
        """The effective state of `trader`: the stricter of everyone's and the trader's own."""
        everyone = self.scope_state(ALL_TRADERS)
        if trader == ALL_TRADERS:
            return everyone
        return max(everyone, self.scope_state(trader), key=_STATE_RANK.__getitem__)

    def orders_last_minute(self, trader: str, now_ms: int) -> int:
        """Intents of `trader` allowed in the 60 s up to `now_ms` (older stamps are dropped)."""
        window = self.recent.get(trader)
        if not window:
            return 0
        while window and window[0] <= now_ms - MINUTE_MS:
            window.popleft()
        # Stamps are in journal order (the caller's clock); one later than `now_ms` (a clock
        # that stepped back) is counted: the window errs on the strict side.
        return len(window)

    # --- the only writer ---------------------------------------------------------------------

    def apply(self, event: ExecEvent) -> None:
        """Apply the next event of the journal."""
        if event.seq != self.seq + 1:
            raise ContractViolation(
                f"execution event seq {event.seq} does not follow {self.seq}: "
                "the journal has a gap or is out of order"
            )
        if isinstance(event, RiskEvent):
            intent = event.intent
            if event.decision is Decision.ALLOW:
                self.orders[intent.intent_id] = sm.new_order(intent, event.ts)
                self.working[intent.intent_id] = None
                self.recent.setdefault(intent.trader, deque()).append(event.ts)
            else:
                self.denied[intent.intent_id] = event
        elif isinstance(event, OrderEvent):
            self._apply_order(event)
        elif isinstance(event, FillEvent):
            order = self.orders.get(event.intent_id)
            if order is None:
                raise ContractViolation(f"fill for an unknown order {event.intent_id}")
            self.orders[event.intent_id] = replace(order, fill_ids=order.fill_ids | {event.fill_id})
        elif isinstance(event, PositionEvent):
            key = (event.trader, event.symbol)
            self.positions[key] = Position(event.units, event.avg_price, event.realised_pnl)
            self.day_pnl[key] = DayPnl(event.day_open_ms, event.day_realised_pnl)
        else:
            self.scopes[event.scope] = Scope(event.state, event.reason, event.ts)
        self.seq = event.seq

    def _apply_order(self, event: OrderEvent) -> None:
        order = self.orders.get(event.intent_id)
        if order is None:
            raise ContractViolation(f"order event for an unknown order {event.intent_id}")
        changed = event.state is not order.state
        # Built directly, not with dataclasses.replace: this runs for every order event of a
        # replay, and replace() costs several times more.
        self.orders[event.intent_id] = Order(
            intent=order.intent,
            state=event.state,
            since_ms=event.ts if changed else order.since_ms,
            submitted_ms=(
                event.ts
                if event.state is OrderState.SUBMITTED and order.submitted_ms is None
                else order.submitted_ms
            ),
            filled_units=event.filled_units,
            avg_fill_price=event.avg_fill_price,
            broker_order_id=event.broker_order_id,
            cancel_requested=event.cancel_requested,
            reason=event.reason,
            fill_ids=order.fill_ids,
        )
        if event.state not in sm.WORKING_STATES:
            self.working.pop(event.intent_id, None)
