"""The paper broker: deterministic fills at the bid/ask, idempotent by client id, exits, replay."""

from __future__ import annotations

from fxconnector.core.model.intent import OrderType, Side, TimeInForce
from fxconnector.execution.messages import (
    CancelOrder,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    ReportState,
    SubmitOrder,
)
from fxconnector.execution.paper import PaperBroker, PaperRecord, Placed
from tests.execution.helpers import OPEN_MS, intent, quote


def broker_with_quote() -> tuple[PaperBroker, list[PaperRecord]]:
    broker = PaperBroker(max_quote_age_ms=2_000)
    log: list[PaperRecord] = []
    log += broker.on_quote(quote(bid=1.1000, ask=1.1002))
    return broker, log


def submit(
    broker: PaperBroker, log: list[PaperRecord], order: SubmitOrder, now: int
) -> list[object]:
    records = broker.submit(order, now)
    log += records
    return list(broker.step(records))


def test_market_orders_fill_at_the_touch() -> None:
    broker, log = broker_with_quote()
    buy = submit(broker, log, SubmitOrder(intent("b", units=500)), OPEN_MS + 1)
    sell = submit(broker, log, SubmitOrder(intent("s", side=Side.SELL)), OPEN_MS + 1)
    assert buy == [
        OrderAccepted("b", OPEN_MS + 1, "P-1"),
        OrderFilled("b", OPEN_MS + 1, "P-1-F1", 500, 1.1002, "P-1"),
    ]
    assert isinstance(sell[1], OrderFilled)
    assert sell[1].price == 1.1000
    assert broker.query("b", OPEN_MS + 2).state is ReportState.FILLED


def test_market_without_a_fresh_price_is_rejected() -> None:
    broker = PaperBroker(max_quote_age_ms=2_000)
    log: list[PaperRecord] = []
    (rejected,) = submit(broker, log, SubmitOrder(intent("a")), OPEN_MS)
    assert isinstance(rejected, OrderRejected)
    assert "no price" in rejected.reason
    broker.step(broker.on_quote(quote()))
    (stale,) = submit(broker, log, SubmitOrder(intent("b")), OPEN_MS + 2_001)
    assert isinstance(stale, OrderRejected)
    assert "2001 ms old" in stale.reason


def test_limit_and_stop_fill_when_crossed() -> None:
    broker, log = broker_with_quote()
    submit(broker, log, SubmitOrder(intent("lb", type=OrderType.LIMIT, price=1.0990)), OPEN_MS)
    submit(broker, log, SubmitOrder(intent("sb", type=OrderType.STOP, price=1.1010)), OPEN_MS)
    submit(
        broker,
        log,
        SubmitOrder(intent("ls", side=Side.SELL, type=OrderType.LIMIT, price=1.1010)),
        OPEN_MS,
    )
    assert broker.query("lb", OPEN_MS).state is ReportState.WORKING
    fills = broker.step(broker.on_quote(quote(bid=1.0985, ask=1.0988, ts_ms=OPEN_MS + 1)))
    assert [(f.intent_id, f.price) for f in fills if isinstance(f, OrderFilled)] == [("lb", 1.0988)]
    fills = broker.step(broker.on_quote(quote(bid=1.1010, ask=1.1012, ts_ms=OPEN_MS + 2)))
    assert sorted((f.intent_id, f.price) for f in fills if isinstance(f, OrderFilled)) == [
        ("ls", 1.1010),
        ("sb", 1.1012),
    ]


def test_ioc_that_cannot_fill_is_cancelled() -> None:
    broker, log = broker_with_quote()
    order = intent("ioc", type=OrderType.LIMIT, price=1.0, time_in_force=TimeInForce.IOC)
    events = submit(broker, log, SubmitOrder(order), OPEN_MS)
    assert isinstance(events[-1], OrderCancelled)
    assert broker.query("ioc", OPEN_MS).state is ReportState.CANCELLED


def test_the_same_client_id_is_never_a_second_order() -> None:
    broker, log = broker_with_quote()
    submit(broker, log, SubmitOrder(intent("x")), OPEN_MS)
    assert broker.submit(SubmitOrder(intent("x")), OPEN_MS + 5) == []
    report = broker.query("x", OPEN_MS + 5)
    assert report.broker_order_id == "P-1"
    assert len(report.fills) == 1


def test_cancel_stops_a_resting_order_and_nothing_else() -> None:
    broker, log = broker_with_quote()
    submit(broker, log, SubmitOrder(intent("r", type=OrderType.LIMIT, price=1.0)), OPEN_MS)
    assert broker.cancel("nope", OPEN_MS) == []
    cancelled = broker.step(broker.cancel(CancelOrder("r").intent_id, OPEN_MS))
    assert [type(e) for e in cancelled] == [OrderCancelled]
    assert broker.cancel("r", OPEN_MS) == []
    assert broker.step(broker.on_quote(quote(bid=0.9, ask=0.91, ts_ms=OPEN_MS + 1))) == []


def test_stop_loss_and_take_profit_are_one_cancels_other_exits() -> None:
    broker, log = broker_with_quote()
    submit(broker, log, SubmitOrder(intent("b", stop_loss=1.0950, take_profit=1.1050)), OPEN_MS)
    assert broker.step(broker.on_quote(quote(bid=1.1040, ask=1.1042, ts_ms=OPEN_MS + 1))) == []
    (tp,) = broker.step(broker.on_quote(quote(bid=1.1050, ask=1.1052, ts_ms=OPEN_MS + 2)))
    assert isinstance(tp, OrderFilled)
    assert (tp.side, tp.units, tp.price) == (Side.SELL, 1_000, 1.1050)
    # The stop loss went with it.
    assert broker.step(broker.on_quote(quote(bid=1.0900, ask=1.0902, ts_ms=OPEN_MS + 3))) == []
    submit(broker, log, SubmitOrder(intent("s", side=Side.SELL, stop_loss=1.0950)), OPEN_MS + 3)
    (sl,) = broker.step(broker.on_quote(quote(bid=1.0948, ask=1.0950, ts_ms=OPEN_MS + 4)))
    assert isinstance(sl, OrderFilled)
    assert (sl.side, sl.price) == (Side.BUY, 1.0950)


def test_replaying_the_records_rebuilds_the_books() -> None:
    broker, log = broker_with_quote()
    submit(broker, log, SubmitOrder(intent("a")), OPEN_MS)
    submit(broker, log, SubmitOrder(intent("r", type=OrderType.LIMIT, price=1.0)), OPEN_MS)
    again = PaperBroker()
    again.replay(log)
    for intent_id in ("a", "r", "missing"):
        assert again.query(intent_id, OPEN_MS) == broker.query(intent_id, OPEN_MS)
    placed = again.submit(SubmitOrder(intent("new")), OPEN_MS)[0]
    assert isinstance(placed, Placed)
    assert placed.broker_order_id == "P-3"
