"""The order state machine under any order of evidence (the real world reports late, twice and
out of order): fills are applied once each, a done order never works again, UNKNOWN comes only
from a submit in doubt, nothing is ever resent, and the position is the sum of the fills."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.model.exec_event import TERMINAL_STATES, OrderState
from fxconnector.core.model.intent import OrderType
from fxconnector.execution.messages import (
    GatewayEvent,
    Operation,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReport,
    ReportState,
    SubmitOrder,
    TransportFailed,
)
from tests.conftest import calendar_profile
from tests.execution.helpers import OPEN_MS, intent, make_core, quote

UNITS = 1_000
FILLS = st.builds(
    lambda n, units: OrderFilled("o", OPEN_MS, f"F{n}", units, 1.09),
    st.integers(0, 6),
    st.integers(1, 600),
)
EVIDENCE = st.one_of(
    FILLS,
    st.builds(lambda: OrderAccepted("o", OPEN_MS, "B-1")),
    st.builds(lambda: OrderRejected("o", OPEN_MS, "no")),
    st.builds(lambda: OrderCancelled("o", OPEN_MS)),
    st.builds(lambda: OrderExpired("o", OPEN_MS)),
    st.builds(
        lambda state, fills: OrderReport("o", OPEN_MS, state, "B-1", tuple(fills)),
        st.sampled_from(list(ReportState)),
        st.lists(FILLS, max_size=3),
    ),
    st.builds(lambda op: TransportFailed("o", OPEN_MS, op), st.sampled_from(list(Operation))),
    st.just("tick"),
    st.just("cancel"),
)


@given(steps=st.lists(EVIDENCE, max_size=30))
def test_any_order_of_evidence(steps: list[GatewayEvent | str]) -> None:
    core = make_core(calendar_profile("fx_ny"))
    core.on_price(quote())
    submission = core.submit(intent("o", type=OrderType.LIMIT, price=1.09, units=UNITS), OPEN_MS)
    sends = [c for c in submission.output.commands if isinstance(c, SubmitOrder)]
    unique_fills: dict[str, int] = {}
    now = OPEN_MS
    done = False
    previous = OrderState.SUBMITTED
    for step in steps:
        now += 3_000
        if step == "tick":
            out = core.tick(now)
        elif step == "cancel":
            out = core.cancel("o", now)
        else:
            assert not isinstance(step, str)
            out = core.on_gateway_event(step, now)
            fills = [step] if isinstance(step, OrderFilled) else []
            if isinstance(step, OrderReport):
                fills = list(step.fills)
            for fill in fills:
                unique_fills.setdefault(fill.fill_id, fill.units)
        sends += [c for c in out.commands if isinstance(c, SubmitOrder)]
        order = core.order("o")
        assert order is not None
        assert order.filled_units == sum(unique_fills.values())
        assert order.fill_ids == frozenset(unique_fills)
        assert core.position("alice", "EURUSD").units == sum(unique_fills.values())
        if done:
            assert order.state in TERMINAL_STATES
        if order.state is OrderState.UNKNOWN and previous is not OrderState.UNKNOWN:
            assert previous is OrderState.SUBMITTED
        if order.filled_units >= UNITS:
            assert order.state is OrderState.FILLED
        done = done or order.state in TERMINAL_STATES
        previous = order.state
    assert len(sends) == 1
