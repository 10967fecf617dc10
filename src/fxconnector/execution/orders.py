"""The order state machine: pure functions from an order and one piece of evidence to the order.

    NEW -> SUBMITTED -> ACCEPTED -> PARTIALLY_FILLED -> FILLED
                 |          |              |
                 |          +--------------+--> CANCELLED | EXPIRED
                 +--> REJECTED | FILLED | PARTIALLY_FILLED | CANCELLED | EXPIRED
                 +--> UNKNOWN (timeout / transport error) --> any state the evidence shows

Rules:
- UNKNOWN means "we asked, we do not know whether the broker has it". Only evidence from the
  broker (an ack, a fill, a reject, a query's report) leaves it; nothing here ever resends.
- The real world reports late: a fill after a cancel, an expiry or even a reject is applied (the
  position is what the broker says it is) and marked late; the order stays in its terminal state
  unless the late fills complete it, then it is FILLED.
- Stale evidence (an ack after the order is already filled) changes nothing.
- A fill is applied once per `fill_id`; a repeat is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fxconnector.core.model.exec_event import TERMINAL_STATES, OrderState
from fxconnector.core.model.intent import OrderIntent

#: States where the broker may still fill the rest of the order.
WORKING_STATES = frozenset(
    {
        OrderState.NEW,
        OrderState.SUBMITTED,
        OrderState.ACCEPTED,
        OrderState.PARTIALLY_FILLED,
        OrderState.UNKNOWN,
    }
)
#: States where the broker has not confirmed that it has the order.
UNCONFIRMED_STATES = frozenset({OrderState.NEW, OrderState.SUBMITTED, OrderState.UNKNOWN})
#: States a late fill can arrive in.
LATE_FILL_STATES = frozenset({OrderState.CANCELLED, OrderState.EXPIRED, OrderState.REJECTED})


@dataclass(frozen=True, slots=True)
class Order:
    """One order, keyed by its intent's id. `since_ms`: when it entered its state;
    `submitted_ms`: when it was handed to the gateway."""

    intent: OrderIntent
    state: OrderState
    since_ms: int
    submitted_ms: int | None = None
    filled_units: int = 0
    avg_fill_price: float | None = None
    broker_order_id: str | None = None
    cancel_requested: bool = False
    reason: str = ""
    fill_ids: frozenset[str] = frozenset()

    @property
    def intent_id(self) -> str:
        return self.intent.intent_id

    @property
    def working(self) -> bool:
        return self.state in WORKING_STATES

    @property
    def remaining_units(self) -> int:
        """Units the broker may still fill (0 once the order is done)."""
        return max(self.intent.units - self.filled_units, 0) if self.working else 0


def new_order(intent: OrderIntent, now_ms: int) -> Order:
    return Order(intent=intent, state=OrderState.NEW, since_ms=now_ms)


def _move(order: Order, state: OrderState, now_ms: int, **changes: object) -> Order:
    if state is order.state:
        return replace(order, **changes)  # type: ignore[arg-type]
    return replace(order, state=state, since_ms=now_ms, **changes)  # type: ignore[arg-type]


def submitted(order: Order, now_ms: int) -> Order:
    """Handed to the gateway."""
    if order.state is not OrderState.NEW:
        return order
    return _move(order, OrderState.SUBMITTED, now_ms, submitted_ms=now_ms)


def unknown(order: Order, now_ms: int, reason: str) -> Order:
    """The submit timed out or its transport broke: the broker may or may not have it."""
    if order.state not in (OrderState.NEW, OrderState.SUBMITTED):
        return order
    return _move(order, OrderState.UNKNOWN, now_ms, reason=reason)


def accepted(order: Order, now_ms: int, broker_order_id: str | None) -> Order:
    """The broker holds the order."""
    if order.state not in UNCONFIRMED_STATES:
        if broker_order_id and order.broker_order_id is None:
            return replace(order, broker_order_id=broker_order_id)
        return order
    state = OrderState.PARTIALLY_FILLED if order.filled_units else OrderState.ACCEPTED
    return _move(
        order, state, now_ms, broker_order_id=broker_order_id or order.broker_order_id, reason=""
    )


def rejected(order: Order, now_ms: int, reason: str) -> Order:
    """The broker refused the order (only before it confirmed it: a later reject is stale)."""
    if order.state not in UNCONFIRMED_STATES:
        return order
    return _move(order, OrderState.REJECTED, now_ms, reason=reason)


def ended(order: Order, state: OrderState, now_ms: int, reason: str) -> Order:
    """The broker cancelled or expired what was left of the order."""
    if state not in (OrderState.CANCELLED, OrderState.EXPIRED):
        raise ValueError(f"ended() takes CANCELLED or EXPIRED, not {state}")
    if order.state in TERMINAL_STATES:
        return order
    return _move(order, state, now_ms, reason=reason)


def filled(order: Order, now_ms: int, fill_id: str, units: int, price: float) -> tuple[Order, bool]:
    """Apply one fill: (the order after it, whether it is late). A repeated `fill_id` returns
    the order unchanged (check `fill_id in order.fill_ids` first to tell)."""
    if fill_id in order.fill_ids:
        return order, False
    late = order.state in LATE_FILL_STATES
    total = order.filled_units + units
    previous = (order.avg_fill_price or 0.0) * order.filled_units
    avg = (previous + price * units) / total
    if total >= order.intent.units:
        state = OrderState.FILLED
    elif late:
        state = order.state
    else:
        state = OrderState.PARTIALLY_FILLED
    moved = _move(
        order,
        state,
        now_ms,
        filled_units=total,
        avg_fill_price=avg,
        fill_ids=order.fill_ids | {fill_id},
    )
    return moved, late
