"""FXCM order side: the bridge's order lines as the core's evidence (pure).

Rules: FXCM's custom id is the intent's id; an `order_report` of the bridge is what FXCM's
ORDERS, TRADES and CLOSED_TRADES tables hold for it. Its fills are trades (`fill_id` = TradeID;
a closed trade adds an exit fill `close:<TradeID>` with the exit's side). No I/O, no clock: the
caller passes `now_ms`.

    {"type":"order_report","id":"","custom_id":"alice-1","state":"filled","order_id":"101",
     "fills":[{"fill_id":"102","units":1000,"rate":1.10002,"side":"buy","ts_ms":1709733600123,
     "exit":false}],"reason":""}
"""

from __future__ import annotations

from typing import Final

from fxconnector.core.model.intent import OrderIntent, Side
from fxconnector.execution.messages import (
    GatewayEvent,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderReport,
    ReportState,
)
from fxconnector.runtime.ingest.broker.fxcm import protocol as wire

_STATES: Final = {
    "not_found": ReportState.NOT_FOUND,
    "working": ReportState.WORKING,
    "filled": ReportState.FILLED,
    "cancelled": ReportState.CANCELLED,
    "rejected": ReportState.REJECTED,
}


def submit_request(request_id: str, intent: OrderIntent) -> wire.OrderSubmitRequest:
    """The bridge request placing `intent` with custom id `intent.intent_id`."""
    return wire.OrderSubmitRequest(
        id=request_id,
        custom_id=intent.intent_id,
        symbol=intent.symbol,
        side="buy" if intent.side is Side.BUY else "sell",
        units=intent.units,
        order_type=intent.type.value,
        rate=intent.price,
        time_in_force=intent.time_in_force.value if intent.time_in_force is not None else None,
        stop_rate=intent.stop_loss,
        limit_rate=intent.take_profit,
    )


def _fills(message: wire.OrderReportMessage, now_ms: int) -> tuple[OrderFilled, ...]:
    return tuple(
        OrderFilled(
            intent_id=message.custom_id,
            ts=fill.ts_ms or now_ms,
            fill_id=fill.fill_id,
            units=fill.units,
            price=fill.rate,
            broker_order_id=message.order_id or None,
            side=Side(fill.side) if fill.exit else None,
        )
        for fill in message.fills
    )


def to_report(message: wire.OrderReportMessage, now_ms: int) -> OrderReport:
    """The bridge's answer as the port's report."""
    return OrderReport(
        intent_id=message.custom_id,
        ts=now_ms,
        state=_STATES[message.state],
        broker_order_id=message.order_id or None,
        fills=_fills(message, now_ms),
        reason=message.reason[:512],
    )


def to_events(message: wire.OrderReportMessage, now_ms: int) -> list[GatewayEvent]:
    """News of a table update as evidence: accepted, each fill, then rejected or cancelled."""
    intent_id = message.custom_id
    events: list[GatewayEvent] = []
    if message.state == "working" and message.order_id:
        events.append(OrderAccepted(intent_id, now_ms, broker_order_id=message.order_id))
    events.extend(_fills(message, now_ms))
    if message.state == "rejected":
        reason = message.reason[:512] or "rejected by FXCM"
        events.append(OrderRejected(intent_id, now_ms, reason=reason))
    elif message.state == "cancelled":
        events.append(OrderCancelled(intent_id, now_ms, reason=message.reason[:512]))
    return events
