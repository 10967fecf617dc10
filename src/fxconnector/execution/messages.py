"""What the execution core says to a broker gateway, and the evidence a gateway reports back.

Rules: plain frozen values, no behaviour. Every gateway (paper, OANDA, FXCM) takes the same
commands and reports the same events; the broker's own client id of an order is always the
intent's `intent_id`, so a resubmission can be recognised by the broker and the answer to a
query names the intent. A transport failure is evidence of nothing: it makes an order UNKNOWN,
never a resend (see `orders.py`).
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from fxconnector.core.model.bar import EpochMs, Price
from fxconnector.core.model.exec_event import BrokerId, OrderState, Text
from fxconnector.core.model.intent import IntentId, OrderIntent, Side, Units

# --- core -> gateway ---------------------------------------------------------------------------


class SubmitOrder(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="submit"):
    """Place the intent's order at the broker with client id `intent.intent_id`."""

    intent: OrderIntent


class CancelOrder(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="cancel"):
    """Cancel the order whose client id is `intent_id` (what is already filled stays filled)."""

    intent_id: IntentId


class QueryOrder(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="query"):
    """Ask the broker what it knows of client id `intent_id`; answered by an `OrderReport`."""

    intent_id: IntentId


GatewayCommand = SubmitOrder | CancelOrder | QueryOrder


# --- gateway -> core ---------------------------------------------------------------------------


class _Evidence(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind"):
    intent_id: IntentId
    ts: EpochMs


class OrderAccepted(_Evidence, frozen=True, tag="accepted"):
    """The broker holds the order (working, not yet or not fully filled)."""

    broker_order_id: BrokerId


class OrderRejected(_Evidence, frozen=True, tag="rejected"):
    """The broker refused the order; nothing of it will ever fill."""

    reason: Text


class OrderFilled(_Evidence, frozen=True, tag="filled"):
    """One execution of `units` at `price`; `fill_id` is unique per broker (a repeat is a no-op).

    `side` is set only for an exit: a fill of the order's own stop loss or take profit, on the
    other side, which closes what the order opened (it changes the position, not the order).
    """

    fill_id: BrokerId
    units: Units
    price: Price
    broker_order_id: BrokerId | None = None
    side: Side | None = None


class OrderCancelled(_Evidence, frozen=True, tag="cancelled"):
    """The broker cancelled the rest of the order (on request, IOC/FOK, or its own decision)."""

    reason: Text = ""


class OrderExpired(_Evidence, frozen=True, tag="expired"):
    """The order's time in force ran out."""

    reason: Text = ""


class ReportState(StrEnum):
    """What a broker can say of an order when asked."""

    NOT_FOUND = "not_found"
    WORKING = "working"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"


class OrderReport(_Evidence, frozen=True, tag="report"):
    """The broker's whole answer to a query: the order's status and every fill it has."""

    state: ReportState
    broker_order_id: BrokerId | None = None
    fills: tuple[OrderFilled, ...] = ()
    reason: Text = ""


class Operation(StrEnum):
    SUBMIT = "submit"
    CANCEL = "cancel"
    QUERY = "query"


class TransportFailed(_Evidence, frozen=True, tag="transport_failed"):
    """A call timed out or its connection broke: the broker may or may not have acted on it."""

    operation: Operation
    detail: Text = ""


GatewayEvent = (
    OrderAccepted
    | OrderRejected
    | OrderFilled
    | OrderCancelled
    | OrderExpired
    | OrderReport
    | TransportFailed
)

REPORT_TO_STATE: dict[ReportState, OrderState] = {
    ReportState.WORKING: OrderState.ACCEPTED,
    ReportState.FILLED: OrderState.FILLED,
    ReportState.CANCELLED: OrderState.CANCELLED,
    ReportState.REJECTED: OrderState.REJECTED,
    ReportState.EXPIRED: OrderState.EXPIRED,
}
