"""OANDA v20 order wire format <-> the gateway port's evidence: pure functions, no I/O.

Rules:
- An order's `clientExtensions.id` is the intent's `intent_id`; the stop loss and take profit
  orders OANDA creates on fill carry `<intent_id>#sl` and `<intent_id>#tp` (`#` is not allowed
  in an intent id, so a dependent order can never be mistaken for another intent).
- Units are a signed decimal string (a sell is negative); prices are sent with the instrument's
  precision (3 decimals for JPY quotes, 5 otherwise) and an intent price that would be rounded
  is refused here (`Unsendable`): the broker must get exactly the price the trader asked for.
- Transactions map to evidence one way only (`events_of`): ORDER_FILL -> OrderFilled (an exit
  fill of `#sl`/`#tp` carries its side), ORDER_CANCEL -> OrderCancelled (OrderExpired for
  TIME_IN_FORCE_EXPIRED), *_ORDER -> OrderAccepted, *_ORDER_REJECT -> OrderRejected except the
  reject of a second request with a pending order's client id (it says nothing of the order).
  Anything else (HEARTBEAT aside) is not order evidence and maps to nothing.

A sample `POST /v3/accounts/{id}/orders` answer (201)::

    {"orderCreateTransaction": {"id": "6372", "type": "MARKET_ORDER", "instrument": "EUR_USD",
       "units": "1000", "timeInForce": "FOK", "clientExtensions": {"id": "i-1"}, ...},
     "orderFillTransaction": {"id": "6373", "type": "ORDER_FILL", "orderID": "6372",
       "clientOrderID": "i-1", "instrument": "EUR_USD", "units": "1000", "price": "1.10020",
       "time": "2026-12-04T11:28:23.123456789Z", ...},
     "relatedTransactionIDs": ["6372", "6373"], "lastTransactionID": "6373"}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from fxconnector.core.errors import BadBrokerData
from fxconnector.core.model.intent import OrderIntent, OrderType, Side
from fxconnector.execution.messages import (
    GatewayEvent,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReport,
    ReportState,
)
from fxconnector.runtime.ingest.broker.oanda.parse import instrument_of, parse_time_ms

STOP_LOSS_SUFFIX: Final = "#sl"
TAKE_PROFIT_SUFFIX: Final = "#tp"
#: OANDA's reject of a second order with the client id of a *pending* one.
DUPLICATE_CLIENT_ID: Final = "CLIENT_ORDER_ID_ALREADY_EXISTS"
EXPIRED_REASON: Final = "TIME_IN_FORCE_EXPIRED"
ORDER_TYPES: Final = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP: "STOP",
}
CREATE_TYPES: Final = frozenset({"MARKET_ORDER", "LIMIT_ORDER", "STOP_ORDER"})
REJECT_TYPES: Final = frozenset({"MARKET_ORDER_REJECT", "LIMIT_ORDER_REJECT", "STOP_ORDER_REJECT"})
_ORDER_STATES: Final = {
    "PENDING": ReportState.WORKING,
    "TRIGGERED": ReportState.WORKING,
    "FILLED": ReportState.FILLED,
    "CANCELLED": ReportState.CANCELLED,
}

Json = Mapping[str, Any]


class Unsendable(ValueError):
    """The intent cannot be said exactly in v20's terms (nothing is sent)."""


def price_decimals(symbol: str) -> int:
    """OANDA's price precision for a currency pair: 3 for a JPY quote, 5 otherwise."""
    return 3 if symbol.endswith("JPY") else 5


def format_price(symbol: str, price: float) -> str:
    """`price` with the instrument's precision; Unsendable when that would change it."""
    decimals = price_decimals(symbol)
    text = f"{price:.{decimals}f}"
    if abs(float(text) - price) > 1e-9 * max(1.0, abs(price)):
        raise Unsendable(f"price {price} has more than {decimals} decimals, OANDA's precision")
    return text


def order_request(intent: OrderIntent) -> dict[str, Any]:
    """The body of `POST /v3/accounts/{id}/orders` for `intent`."""
    order: dict[str, Any] = {
        "type": ORDER_TYPES[intent.type],
        "instrument": instrument_of(intent.symbol),
        "units": str(intent.signed_units),
        "timeInForce": intent.tif.value,
        "positionFill": "DEFAULT",
        "clientExtensions": {"id": intent.intent_id, "tag": "fxconnector"},
    }
    if intent.type is not OrderType.MARKET:
        if intent.price is None:
            raise Unsendable(f"a {intent.type.value} order needs a price")
        order["price"] = format_price(intent.symbol, intent.price)
    if intent.stop_loss is not None:
        order["stopLossOnFill"] = {
            "price": format_price(intent.symbol, intent.stop_loss),
            "timeInForce": "GTC",
            "clientExtensions": {"id": intent.intent_id + STOP_LOSS_SUFFIX},
        }
    if intent.take_profit is not None:
        order["takeProfitOnFill"] = {
            "price": format_price(intent.symbol, intent.take_profit),
            "timeInForce": "GTC",
            "clientExtensions": {"id": intent.intent_id + TAKE_PROFIT_SUFFIX},
        }
    return {"order": order}


# --- reading -----------------------------------------------------------------------------------


def _text(obj: Json, name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise BadBrokerData(f"v20: field {name!r} missing or not text in {str(obj)[:200]}")
    return value


def transaction_id(transaction: Json) -> int:
    """The numeric id of a transaction (they increase within an account)."""
    text = _text(transaction, "id")
    if not text.isdigit():
        raise BadBrokerData(f"v20: transaction id {text[:40]!r} is not a number")
    return int(text)


def last_transaction_id(answer: Json) -> int | None:
    """`lastTransactionID` of an answer or a heartbeat (None when absent)."""
    text = answer.get("lastTransactionID")
    if isinstance(text, str) and text.isdigit():
        return int(text)
    return None


def _time_ms(transaction: Json, fallback_ms: int) -> int:
    text = transaction.get("time")
    return parse_time_ms(text) if isinstance(text, str) else fallback_ms


def _client_id(order_or_tx: Json, field: str = "clientExtensions") -> str | None:
    extensions = order_or_tx.get(field)
    if isinstance(extensions, Mapping):
        value = extensions.get("id")
        if isinstance(value, str) and value:
            return value
    return None


def _split_client_id(client_id: str) -> tuple[str, bool]:
    """(intent_id, is an exit order's id)."""
    for suffix in (STOP_LOSS_SUFFIX, TAKE_PROFIT_SUFFIX):
        if client_id.endswith(suffix):
            return client_id[: -len(suffix)], True
    return client_id, False


def fill_of(transaction: Json, now_ms: int) -> OrderFilled | None:
    """An ORDER_FILL as evidence (None when the filled order is not one of ours)."""
    client_id = transaction.get("clientOrderID")
    if not isinstance(client_id, str) or not client_id:
        return None
    intent_id, exit_fill = _split_client_id(client_id)
    try:
        units = int(float(_text(transaction, "units")))
        price = float(_text(transaction, "price"))
    except ValueError as exc:
        raise BadBrokerData(f"v20: unreadable ORDER_FILL {str(transaction)[:200]}") from exc
    if units == 0:
        return None
    side = Side.BUY if units > 0 else Side.SELL
    return OrderFilled(
        intent_id=intent_id,
        ts=_time_ms(transaction, now_ms),
        fill_id=str(transaction_id(transaction)),
        units=abs(units),
        price=price,
        broker_order_id=_text(transaction, "orderID"),
        side=side if exit_fill else None,
    )


def events_of(transaction: Json, now_ms: int) -> list[GatewayEvent]:
    """What one transaction (from the stream, `sinceid` or an order answer) says of our orders."""
    kind = transaction.get("type")
    ts = _time_ms(transaction, now_ms) if "time" in transaction else now_ms
    if kind == "ORDER_FILL":
        fill = fill_of(transaction, now_ms)
        return [fill] if fill is not None else []
    if kind == "ORDER_CANCEL":
        client_id = transaction.get("clientOrderID")
        if not isinstance(client_id, str) or not client_id:
            return []
        intent_id, exit_order = _split_client_id(client_id)
        if exit_order:
            return []  # a stop loss / take profit cancelled when its trade closed
        reason = str(transaction.get("reason", ""))[:512]
        if reason == EXPIRED_REASON:
            return [OrderExpired(intent_id=intent_id, ts=ts, reason=reason)]
        return [OrderCancelled(intent_id=intent_id, ts=ts, reason=reason)]
    if kind in CREATE_TYPES:
        client_id = _client_id(transaction)
        if client_id is None or _split_client_id(client_id)[1]:
            return []
        broker_id = str(transaction_id(transaction))
        return [OrderAccepted(intent_id=client_id, ts=ts, broker_order_id=broker_id)]
    if kind in REJECT_TYPES:
        client_id = _client_id(transaction)
        reason = str(transaction.get("rejectReason", ""))[:512]
        if client_id is None or reason == DUPLICATE_CLIENT_ID or _split_client_id(client_id)[1]:
            return []
        return [OrderRejected(intent_id=client_id, ts=ts, reason=reason or "rejected")]
    return []


def rejected_client_id(transaction: Json) -> tuple[str, str] | None:
    """(client id, reason) of an order reject that is evidence about that order."""
    if transaction.get("type") not in REJECT_TYPES:
        return None
    events = events_of(transaction, 0)
    if events and isinstance(events[0], OrderRejected):
        return events[0].intent_id, events[0].reason
    return None


def create_answer_report(intent_id: str, answer: Json, now_ms: int) -> OrderReport:
    """The report of a 201 answer to an order create: WORKING, FILLED, or CANCELLED (FOK/IOC
    not filled, with any fill it had)."""
    created = answer.get("orderCreateTransaction")
    if not isinstance(created, Mapping):
        raise BadBrokerData("v20: an order create answer without orderCreateTransaction")
    broker_id = str(transaction_id(created))
    fills: list[OrderFilled] = []
    filled = answer.get("orderFillTransaction")
    if isinstance(filled, Mapping):
        fill = fill_of(filled, now_ms)
        if fill is not None:
            fills.append(fill)
    cancelled = answer.get("orderCancelTransaction")
    if isinstance(cancelled, Mapping):
        reason = str(cancelled.get("reason", ""))[:512]
        state = ReportState.EXPIRED if reason == EXPIRED_REASON else ReportState.CANCELLED
    else:
        state = ReportState.FILLED if fills else ReportState.WORKING
        reason = ""
    return OrderReport(
        intent_id=intent_id,
        ts=now_ms,
        state=state,
        broker_order_id=broker_id,
        fills=tuple(fills),
        reason=reason,
    )


def order_report(intent_id: str, order: Json, related: Sequence[Json], now_ms: int) -> OrderReport:
    """The report of `GET /orders/@{id}`'s `order`, with its filling and cancelling
    transactions (`related`, fetched by the caller)."""
    state_text = _text(order, "state")
    try:
        state = _ORDER_STATES[state_text]
    except KeyError:
        raise BadBrokerData(f"v20: unknown order state {state_text[:40]!r}") from None
    fills: list[OrderFilled] = []
    reason = ""
    for transaction in related:
        kind = transaction.get("type")
        if kind == "ORDER_FILL":
            fill = fill_of(transaction, now_ms)
            if fill is not None:
                fills.append(fill)
        elif kind == "ORDER_CANCEL":
            reason = str(transaction.get("reason", ""))[:512]
            if reason == EXPIRED_REASON:
                state = ReportState.EXPIRED
    return OrderReport(
        intent_id=intent_id,
        ts=now_ms,
        state=state,
        broker_order_id=_text(order, "id"),
        fills=tuple(fills),
        reason=reason,
    )
