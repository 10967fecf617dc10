"""The v20 order wire mapping: request bodies from intents, evidence from transactions.

Payloads follow OANDA's documented transaction shapes (ORDER_FILL, ORDER_CANCEL, *_ORDER,
*_ORDER_REJECT, the order create answer); each case checks the whole output.
"""

from __future__ import annotations

from typing import Any

import pytest

from fxconnector.core.errors import BadBrokerData
from fxconnector.core.model.intent import OrderIntent, OrderType, Side, TimeInForce
from fxconnector.execution.messages import (
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReport,
    ReportState,
)
from fxconnector.runtime.execution.gateways.oanda_wire import (
    Unsendable,
    create_answer_report,
    events_of,
    order_report,
    order_request,
)

NOW = 1_733_000_000_000
TIME = "2024-11-30T20:53:20.000000000Z"  # == NOW


def intent(**changes: Any) -> OrderIntent:
    values: dict[str, Any] = {
        "intent_id": "i-1",
        "trader": "alice",
        "symbol": "EURUSD",
        "side": Side.BUY,
        "units": 1000,
        "type": OrderType.MARKET,
        "ts": NOW,
    }
    values.update(changes)
    return OrderIntent(**values)


def test_a_market_buy_is_signed_units_fok_with_the_intent_as_client_id() -> None:
    assert order_request(intent()) == {
        "order": {
            "type": "MARKET",
            "instrument": "EUR_USD",
            "units": "1000",
            "timeInForce": "FOK",
            "positionFill": "DEFAULT",
            "clientExtensions": {"id": "i-1", "tag": "fxconnector"},
        }
    }


def test_a_limit_sell_with_brackets_carries_prices_at_oanda_precision() -> None:
    body = order_request(
        intent(
            symbol="USDJPY",
            side=Side.SELL,
            type=OrderType.LIMIT,
            price=151.25,
            time_in_force=TimeInForce.IOC,
            stop_loss=152.0,
            take_profit=150.5,
        )
    )["order"]
    assert body["units"] == "-1000"
    assert (body["type"], body["price"], body["timeInForce"]) == ("LIMIT", "151.250", "IOC")
    assert body["stopLossOnFill"] == {
        "price": "152.000",
        "timeInForce": "GTC",
        "clientExtensions": {"id": "i-1#sl"},
    }
    assert body["takeProfitOnFill"]["clientExtensions"] == {"id": "i-1#tp"}


def test_a_price_oanda_would_round_is_not_sent() -> None:
    with pytest.raises(Unsendable, match="5 decimals"):
        order_request(intent(type=OrderType.STOP, price=1.123456))
    with pytest.raises(Unsendable, match="3 decimals"):
        order_request(intent(symbol="USDJPY", type=OrderType.LIMIT, price=150.0005))


FILL = {
    "id": "6373",
    "time": TIME,
    "type": "ORDER_FILL",
    "orderID": "6372",
    "clientOrderID": "i-1",
    "instrument": "EUR_USD",
    "units": "1000",
    "price": "1.10020",
}


def test_transactions_map_to_evidence() -> None:
    assert events_of(FILL, 0) == [
        OrderFilled(
            intent_id="i-1",
            ts=NOW,
            fill_id="6373",
            units=1000,
            price=1.1002,
            broker_order_id="6372",
        )
    ]
    exit_fill = FILL | {
        "id": "6400",
        "clientOrderID": "i-1#sl",
        "units": "-1000",
        "orderID": "6374",
    }
    assert events_of(exit_fill, 0) == [
        OrderFilled(
            intent_id="i-1",
            ts=NOW,
            fill_id="6400",
            units=1000,
            price=1.1002,
            broker_order_id="6374",
            side=Side.SELL,
        )
    ]
    created = {"id": "6372", "time": TIME, "type": "LIMIT_ORDER", "clientExtensions": {"id": "i-1"}}
    assert events_of(created, 0) == [OrderAccepted(intent_id="i-1", ts=NOW, broker_order_id="6372")]
    cancel = {"id": "6380", "time": TIME, "type": "ORDER_CANCEL", "orderID": "6372"}
    assert events_of(cancel | {"clientOrderID": "i-1", "reason": "CLIENT_REQUEST"}, 0) == [
        OrderCancelled(intent_id="i-1", ts=NOW, reason="CLIENT_REQUEST")
    ]
    assert events_of(cancel | {"clientOrderID": "i-1", "reason": "TIME_IN_FORCE_EXPIRED"}, 0) == [
        OrderExpired(intent_id="i-1", ts=NOW, reason="TIME_IN_FORCE_EXPIRED")
    ]
    # A dependent order cancelled with its trade says nothing of the intent.
    assert events_of(cancel | {"clientOrderID": "i-1#tp", "reason": "LINKED_TRADE_CLOSED"}, 0) == []
    reject = {
        "id": "6390",
        "time": TIME,
        "type": "MARKET_ORDER_REJECT",
        "clientExtensions": {"id": "i-2"},
        "rejectReason": "INSUFFICIENT_MARGIN",
    }
    assert events_of(reject, 0) == [
        OrderRejected(intent_id="i-2", ts=NOW, reason="INSUFFICIENT_MARGIN")
    ]
    # The reject of a second request with a pending order's id is not about that order.
    assert events_of(reject | {"rejectReason": "CLIENT_ORDER_ID_ALREADY_EXISTS"}, 0) == []
    # Not order evidence: other transactions and orders that are not ours.
    assert events_of({"id": "6391", "type": "DAILY_FINANCING", "time": TIME}, 0) == []
    assert events_of(FILL | {"clientOrderID": None}, 0) == []


def test_unreadable_transactions_are_bad_broker_data() -> None:
    with pytest.raises(BadBrokerData):
        events_of(FILL | {"units": "lots"}, 0)
    with pytest.raises(BadBrokerData):
        events_of(FILL | {"id": "x1"}, 0)


def test_create_answers_and_order_queries_become_reports() -> None:
    created = {"id": "6372", "type": "MARKET_ORDER", "clientExtensions": {"id": "i-1"}}
    filled = create_answer_report(
        "i-1", {"orderCreateTransaction": created, "orderFillTransaction": FILL}, NOW
    )
    assert filled.state is ReportState.FILLED
    assert filled.broker_order_id == "6372"
    assert [f.fill_id for f in filled.fills] == ["6373"]
    killed = create_answer_report(
        "i-1",
        {
            "orderCreateTransaction": created,
            "orderCancelTransaction": {
                "id": "6373",
                "type": "ORDER_CANCEL",
                "reason": "MARKET_HALTED",
            },
        },
        NOW,
    )
    assert (killed.state, killed.reason, killed.fills) == (
        ReportState.CANCELLED,
        "MARKET_HALTED",
        (),
    )
    working = create_answer_report("i-1", {"orderCreateTransaction": created}, NOW)
    assert working == OrderReport(
        intent_id="i-1", ts=NOW, state=ReportState.WORKING, broker_order_id="6372"
    )
    order = {"id": "6372", "state": "FILLED", "fillingTransactionID": "6373"}
    assert order_report("i-1", order, [FILL], NOW).fills == filled.fills
    expired = order_report(
        "i-1",
        {"id": "6372", "state": "CANCELLED"},
        [{"id": "6380", "type": "ORDER_CANCEL", "reason": "TIME_IN_FORCE_EXPIRED"}],
        NOW,
    )
    assert expired.state is ReportState.EXPIRED
    with pytest.raises(BadBrokerData, match="unknown order state"):
        order_report("i-1", {"id": "1", "state": "SOMETHING"}, [], NOW)
