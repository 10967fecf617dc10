"""The order state machine, transition by transition, through the core (real events)."""

from __future__ import annotations

import pytest

from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.model.exec_event import FillEvent, OrderEvent, OrderState
from fxconnector.core.model.intent import OrderType, Side
from fxconnector.execution import orders as sm
from fxconnector.execution.core import ExecCore
from fxconnector.execution.messages import (
    Operation,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReport,
    ReportState,
    TransportFailed,
)
from tests.execution.helpers import OPEN_MS, intent, make_core, quote


@pytest.fixture
def core(fx_ny: CalendarProfile) -> ExecCore:
    core = make_core(fx_ny)
    core.on_price(quote())
    sub = core.submit(intent("o", type=OrderType.LIMIT, price=1.09, units=1_000), OPEN_MS)
    assert sub.decision.allowed
    return core


def state(core: ExecCore) -> OrderState:
    order = core.order("o")
    assert order is not None
    return order.state


def test_new_then_submitted_on_submit(core: ExecCore) -> None:
    order = core.order("o")
    assert order is not None
    assert (order.state, order.submitted_ms) == (OrderState.SUBMITTED, OPEN_MS)


def test_accepted_partially_filled_filled(core: ExecCore) -> None:
    core.on_gateway_event(OrderAccepted("o", OPEN_MS + 1, "B-1"), OPEN_MS + 1)
    assert state(core) is OrderState.ACCEPTED
    core.on_gateway_event(OrderFilled("o", OPEN_MS + 2, "F1", 400, 1.09), OPEN_MS + 2)
    assert state(core) is OrderState.PARTIALLY_FILLED
    out = core.on_gateway_event(OrderFilled("o", OPEN_MS + 3, "F2", 600, 1.08), OPEN_MS + 3)
    assert state(core) is OrderState.FILLED
    order = core.order("o")
    assert order is not None
    assert order.filled_units == 1_000
    assert order.avg_fill_price == pytest.approx((400 * 1.09 + 600 * 1.08) / 1_000)
    assert [type(e).__name__ for e in out.events] == ["FillEvent", "PositionEvent", "OrderEvent"]
    assert core.position("alice", "EURUSD").units == 1_000


def test_a_repeated_fill_id_is_applied_once(core: ExecCore) -> None:
    fill = OrderFilled("o", OPEN_MS + 1, "F1", 400, 1.09)
    core.on_gateway_event(fill, OPEN_MS + 1)
    assert core.on_gateway_event(fill, OPEN_MS + 2).events == ()
    report = OrderReport("o", OPEN_MS + 3, ReportState.WORKING, "B-1", (fill,))
    out = core.on_gateway_event(report, OPEN_MS + 3)
    assert not any(isinstance(e, FillEvent) for e in out.events)
    assert core.position("alice", "EURUSD").units == 400


def test_late_fill_after_cancel_is_applied_and_marked(core: ExecCore) -> None:
    core.on_gateway_event(OrderAccepted("o", OPEN_MS + 1, "B-1"), OPEN_MS + 1)
    core.cancel("o", OPEN_MS + 2)
    core.on_gateway_event(OrderCancelled("o", OPEN_MS + 3, "on request"), OPEN_MS + 3)
    assert state(core) is OrderState.CANCELLED
    out = core.on_gateway_event(OrderFilled("o", OPEN_MS + 4, "F1", 300, 1.09), OPEN_MS + 4)
    fills = [e for e in out.events if isinstance(e, FillEvent)]
    assert len(fills) == 1
    assert fills[0].late
    assert state(core) is OrderState.CANCELLED
    assert core.position("alice", "EURUSD").units == 300
    # Late fills that complete the order make it FILLED.
    core.on_gateway_event(OrderFilled("o", OPEN_MS + 5, "F2", 700, 1.09), OPEN_MS + 5)
    assert state(core) is OrderState.FILLED


def test_late_fill_after_expiry_and_reject(fx_ny: CalendarProfile) -> None:
    core = make_core(fx_ny)
    core.on_price(quote())
    core.submit(intent("e", type=OrderType.LIMIT, price=1.09), OPEN_MS)
    core.submit(intent("r", type=OrderType.LIMIT, price=1.09), OPEN_MS)
    core.on_gateway_event(OrderExpired("e", OPEN_MS + 1), OPEN_MS + 1)
    core.on_gateway_event(OrderRejected("r", OPEN_MS + 1, "margin"), OPEN_MS + 1)
    for intent_id in ("e", "r"):
        out = core.on_gateway_event(
            OrderFilled(intent_id, OPEN_MS + 2, f"F-{intent_id}", 10, 1.09), OPEN_MS + 2
        )
        assert [e.late for e in out.events if isinstance(e, FillEvent)] == [True]
    assert core.position("alice", "EURUSD").units == 20


def test_stale_evidence_changes_nothing(core: ExecCore) -> None:
    fill = OrderFilled("o", OPEN_MS + 1, "F1", 1_000, 1.09, broker_order_id="B-1")
    core.on_gateway_event(fill, OPEN_MS + 1)
    assert state(core) is OrderState.FILLED
    for late in (
        OrderAccepted("o", OPEN_MS + 2, "B-1"),
        OrderRejected("o", OPEN_MS + 2, "late"),
        OrderCancelled("o", OPEN_MS + 2),
        OrderExpired("o", OPEN_MS + 2),
    ):
        assert core.on_gateway_event(late, OPEN_MS + 2).events == ()
    assert state(core) is OrderState.FILLED


def test_a_reject_after_the_ack_is_stale(core: ExecCore) -> None:
    core.on_gateway_event(OrderAccepted("o", OPEN_MS + 1, "B-1"), OPEN_MS + 1)
    core.on_gateway_event(OrderRejected("o", OPEN_MS + 2, "?"), OPEN_MS + 2)
    assert state(core) is OrderState.ACCEPTED


def test_unknown_is_left_only_on_evidence(core: ExecCore) -> None:
    failure = TransportFailed("o", OPEN_MS + 1, Operation.SUBMIT, "read timeout")
    out = core.on_gateway_event(failure, OPEN_MS + 1)
    assert state(core) is OrderState.UNKNOWN
    assert [type(c).__name__ for c in out.commands] == ["QueryOrder"]
    # Time alone never resolves it: ticks only query.
    for step in range(1, 20):
        now = OPEN_MS + 1 + step * 1_000
        tick = core.tick(now)
        assert all(type(c).__name__ == "QueryOrder" for c in tick.commands)
        assert state(core) is OrderState.UNKNOWN
    core.on_gateway_event(
        OrderReport("o", OPEN_MS + 30_000, ReportState.WORKING, "B-9"), OPEN_MS + 30_000
    )
    assert state(core) is OrderState.ACCEPTED
    order = core.order("o")
    assert order is not None
    assert order.broker_order_id == "B-9"


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (ReportState.FILLED, OrderState.FILLED),
        (ReportState.CANCELLED, OrderState.CANCELLED),
        (ReportState.REJECTED, OrderState.REJECTED),
        (ReportState.EXPIRED, OrderState.EXPIRED),
        (ReportState.WORKING, OrderState.ACCEPTED),
    ],
)
def test_unknown_resolves_to_what_the_report_shows(
    core: ExecCore, report: ReportState, expected: OrderState
) -> None:
    core.on_gateway_event(TransportFailed("o", OPEN_MS, Operation.SUBMIT), OPEN_MS)
    fills = (
        (OrderFilled("o", OPEN_MS + 5, "F1", 1_000, 1.09),) if report is ReportState.FILLED else ()
    )
    core.on_gateway_event(OrderReport("o", OPEN_MS + 9, report, "B-1", fills), OPEN_MS + 9)
    assert state(core) is expected


def test_not_found_is_believed_only_after_the_grace(core: ExecCore) -> None:
    core.on_gateway_event(TransportFailed("o", OPEN_MS, Operation.SUBMIT), OPEN_MS)
    early = OrderReport("o", OPEN_MS + 9_999, ReportState.NOT_FOUND)
    assert core.on_gateway_event(early, OPEN_MS + 9_999).events == ()
    assert state(core) is OrderState.UNKNOWN
    late = OrderReport("o", OPEN_MS + 10_000, ReportState.NOT_FOUND)
    (event,) = core.on_gateway_event(late, OPEN_MS + 10_000).events
    assert isinstance(event, OrderEvent)
    assert event.state is OrderState.REJECTED
    assert "never arrived" in event.reason


def test_pure_transitions_reject_misuse() -> None:
    order = sm.new_order(intent("p", side=Side.SELL), OPEN_MS)
    with pytest.raises(ValueError, match="CANCELLED or EXPIRED"):
        sm.ended(order, OrderState.FILLED, OPEN_MS, "")
    assert sm.unknown(sm.accepted(sm.submitted(order, 1), 2, "B"), 3, "x").state is (
        OrderState.ACCEPTED
    )
