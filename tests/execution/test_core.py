"""The execution core: exactly once, UNKNOWN never resent, escalation, recovery, replay."""

from __future__ import annotations

import msgspec
import pytest

from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.errors import CommandError, ContractViolation
from fxconnector.core.model.exec_event import (
    ALL_TRADERS,
    ExecEvent,
    OrderState,
    RiskEvent,
    RiskReason,
    StateSource,
    TradingState,
    TradingStateEvent,
)
from fxconnector.core.model.intent import OrderType, Side
from fxconnector.core.validation.intent import validate_exec_event
from fxconnector.execution.core import ExecCore, Output
from fxconnector.execution.messages import (
    GatewayCommand,
    Operation,
    OrderFilled,
    QueryOrder,
    SubmitOrder,
    TransportFailed,
)
from fxconnector.execution.risk.validator import Deny
from tests.execution.helpers import OPEN_MS, SETTINGS, intent, make_core, quote


@pytest.fixture
def core(fx_ny: CalendarProfile) -> ExecCore:
    core = make_core(fx_ny)
    core.on_price(quote())
    return core


def submits(commands: tuple[GatewayCommand, ...]) -> list[str]:
    return [c.intent.intent_id for c in commands if isinstance(c, SubmitOrder)]


def test_the_same_intent_twice_is_one_order(core: ExecCore) -> None:
    first = core.submit(intent("once"), OPEN_MS)
    second = core.submit(intent("once"), OPEN_MS + 10)
    assert submits(first.output.commands) == ["once"]
    assert second.duplicate
    assert second.output == Output()
    assert second.order == first.order
    assert len(core.orders()) == 1


def test_a_denied_intent_again_is_the_same_deny(core: ExecCore) -> None:
    first = core.submit(intent("big", units=10**6), OPEN_MS)
    second = core.submit(intent("big", units=10**6), OPEN_MS)
    assert first.decision == second.decision
    assert isinstance(second.decision, Deny)
    assert second.duplicate
    assert second.output == Output()


def test_the_same_id_for_another_intent_is_a_conflict(core: ExecCore) -> None:
    core.submit(intent("x", units=100), OPEN_MS)
    other = core.submit(intent("x", units=200), OPEN_MS)
    assert isinstance(other.decision, Deny)
    assert other.decision.reason is RiskReason.INTENT_ID_CONFLICT
    assert other.output == Output()


def test_a_timeout_makes_the_order_unknown_and_never_resends(core: ExecCore) -> None:
    core.submit(intent("t"), OPEN_MS)
    commands: list[GatewayCommand] = []
    now = OPEN_MS
    while now < OPEN_MS + 120_000:
        now += 500
        out = core.tick(now)
        commands.extend(out.commands)
        if now == OPEN_MS + SETTINGS.ack_timeout_ms:
            order = core.order("t")
            assert order is not None
            assert order.state is OrderState.UNKNOWN
    assert submits(tuple(commands)) == []
    assert commands
    assert all(isinstance(c, QueryOrder) and c.intent_id == "t" for c in commands)
    # Queried every query_interval_ms, not on every tick.
    assert len(commands) <= 120_000 // SETTINGS.query_interval_ms + 1


def test_a_transport_error_makes_the_order_unknown(core: ExecCore) -> None:
    core.submit(intent("t"), OPEN_MS)
    out = core.on_gateway_event(
        TransportFailed("t", OPEN_MS + 1, Operation.SUBMIT, "reset"), OPEN_MS + 1
    )
    order = core.order("t")
    assert order is not None
    assert order.state is OrderState.UNKNOWN
    assert out.commands == (QueryOrder("t"),)
    # A failed cancel or query changes nothing.
    for operation in (Operation.CANCEL, Operation.QUERY):
        failed = TransportFailed("t", OPEN_MS + 2, operation)
        assert core.on_gateway_event(failed, OPEN_MS + 2) == Output()


def test_unknown_past_the_bound_halts_everyone_once(core: ExecCore) -> None:
    core.submit(intent("t"), OPEN_MS)
    core.on_gateway_event(TransportFailed("t", OPEN_MS, Operation.SUBMIT), OPEN_MS)
    before = core.tick(OPEN_MS + SETTINGS.unknown_halt_ms - 1)
    assert not any(isinstance(e, TradingStateEvent) for e in before.events)
    out = core.tick(OPEN_MS + SETTINGS.unknown_halt_ms)
    (halt,) = [e for e in out.events if isinstance(e, TradingStateEvent)]
    assert (halt.scope, halt.state, halt.source) == (
        ALL_TRADERS,
        TradingState.HALTED,
        StateSource.AUTO,
    )
    assert core.trading_state("bob") is TradingState.HALTED
    core.set_trading_state(ALL_TRADERS, TradingState.ACTIVE, "checked by hand", OPEN_MS + 60_001)
    later = core.tick(OPEN_MS + 10 * SETTINGS.unknown_halt_ms)
    assert not any(isinstance(e, TradingStateEvent) for e in later.events)


def test_cancel_of_an_unknown_id_is_a_command_error(core: ExecCore) -> None:
    with pytest.raises(CommandError, match="no order with intent_id 'nope'"):
        core.cancel("nope", OPEN_MS)


def test_cancel_of_a_done_order_sends_nothing(core: ExecCore) -> None:
    core.submit(intent("d"), OPEN_MS)
    core.on_gateway_event(OrderFilled("d", OPEN_MS, "F", 1_000, 1.1), OPEN_MS)
    out = core.cancel("d", OPEN_MS)
    assert out.commands == ()
    assert out.notes


def test_evidence_for_a_stranger_is_a_note(core: ExecCore) -> None:
    out = core.on_gateway_event(OrderFilled("ghost", OPEN_MS, "F", 1, 1.1), OPEN_MS)
    assert out.events == ()
    assert out.notes


def test_recover_queries_every_open_order_after_a_replay(
    core: ExecCore, fx_ny: CalendarProfile
) -> None:
    journal: list[ExecEvent] = []
    for n in range(3):
        journal += core.submit(
            intent(f"o{n}", type=OrderType.LIMIT, price=1.05), OPEN_MS
        ).output.events
    journal += core.on_gateway_event(OrderFilled("o1", OPEN_MS, "F", 1_000, 1.05), OPEN_MS).events
    restarted = make_core(fx_ny)
    restarted.replay(journal)
    out = restarted.recover(OPEN_MS + 1)
    assert out.commands == (QueryOrder("o0"), QueryOrder("o2"))
    assert out.events == ()


def test_a_gap_in_the_journal_is_a_contract_violation(
    core: ExecCore, fx_ny: CalendarProfile
) -> None:
    events = core.submit(intent("g"), OPEN_MS).output.events
    with pytest.raises(ContractViolation, match="seq 2 does not follow 0"):
        make_core(fx_ny).replay(events[1:])


def test_every_event_is_a_valid_public_payload(core: ExecCore) -> None:
    out = core.submit(intent("v", units=10_000), OPEN_MS).output
    out += core.on_gateway_event(OrderFilled("v", OPEN_MS, "F1", 10_000, 1.1002), OPEN_MS)
    out += core.submit(intent("w", units=10_000, side=Side.SELL), OPEN_MS).output
    out += core.on_gateway_event(OrderFilled("w", OPEN_MS, "F2", 10_000, 1.09), OPEN_MS)
    out += core.submit(intent("z"), OPEN_MS).output
    kinds = set()
    for event in out.events:
        checked = validate_exec_event(msgspec.json.encode(event))
        assert checked.ok, checked.problems
        kinds.add(type(event).__name__)
    assert kinds == {"RiskEvent", "OrderEvent", "FillEvent", "PositionEvent", "TradingStateEvent"}
    denied = [e for e in out.events if isinstance(e, RiskEvent) and e.reason is not None]
    assert [e.reason for e in denied] == [RiskReason.TRADING_HALTED]


def test_exit_fills_close_the_position(core: ExecCore) -> None:
    core.submit(intent("b", units=1_000, stop_loss=1.09, take_profit=1.12), OPEN_MS)
    core.on_gateway_event(OrderFilled("b", OPEN_MS, "F1", 1_000, 1.1002), OPEN_MS)
    exit_fill = OrderFilled("b", OPEN_MS + 1, "F2", 1_000, 1.12, side=Side.SELL)
    core.on_gateway_event(exit_fill, OPEN_MS + 1)
    position = core.position("alice", "EURUSD")
    assert position.units == 0
    assert position.realised_pnl == pytest.approx(1_000 * (1.12 - 1.1002))
    order = core.order("b")
    assert order is not None
    assert (order.state, order.filled_units) == (OrderState.FILLED, 1_000)


def test_an_intent_built_against_its_schema_is_denied_unjournaled(core: ExecCore) -> None:
    bad = intent("bad id with spaces", units=0)
    sub = core.submit(bad, OPEN_MS)
    assert isinstance(sub.decision, Deny)
    assert sub.decision.reason is RiskReason.INVALID_INTENT
    assert sub.output == Output()
    assert core.seq == 0


def test_a_retry_with_a_new_ts_is_the_same_intent(core: ExecCore) -> None:
    core.submit(intent("r", ts=OPEN_MS), OPEN_MS)
    again = core.submit(intent("r", ts=OPEN_MS + 5_000), OPEN_MS + 5_000)
    assert again.duplicate
    assert again.decision.allowed
    assert again.output == Output()


def test_a_bad_scope_is_a_command_error(core: ExecCore) -> None:
    with pytest.raises(CommandError, match="neither"):
        core.set_trading_state("two words", TradingState.HALTED, "x", OPEN_MS)
    assert core.seq == 0


@pytest.mark.parametrize(
    "evidence",
    [
        OrderFilled("g", OPEN_MS, "", 10, 1.1),
        OrderFilled("g", OPEN_MS, "F", 10, float("nan")),
        OrderFilled("g", OPEN_MS, "F", 0, 1.1),
    ],
)
def test_unusable_evidence_is_a_note_not_an_event(core: ExecCore, evidence: OrderFilled) -> None:
    core.submit(intent("g"), OPEN_MS)
    seq = core.seq
    out = core.on_gateway_event(evidence, OPEN_MS)
    assert out.events == ()
    assert "unusable evidence" in out.notes[0]
    assert core.seq == seq


def test_after_a_resume_a_new_doubt_still_halts(core: ExecCore) -> None:
    core.submit(intent("old"), OPEN_MS)
    core.on_gateway_event(TransportFailed("old", OPEN_MS, Operation.SUBMIT), OPEN_MS)
    core.tick(OPEN_MS + SETTINGS.unknown_halt_ms)
    core.submit(intent("new", units=10), OPEN_MS + 1)  # denied: halted
    core.set_trading_state(ALL_TRADERS, TradingState.ACTIVE, "seen", OPEN_MS + 30_001)
    core.on_price(quote(ts_ms=OPEN_MS + 30_001))
    assert core.submit(intent("later", units=10), OPEN_MS + 30_001).decision.allowed
    core.tick(OPEN_MS + 30_001 + SETTINGS.ack_timeout_ms)  # "later" goes UNKNOWN
    later = core.order("later")
    assert later is not None
    assert later.state is OrderState.UNKNOWN
    out = core.tick(OPEN_MS + 30_001 + SETTINGS.ack_timeout_ms + SETTINGS.unknown_halt_ms)
    halts = [e for e in out.events if isinstance(e, TradingStateEvent)]
    assert [h.reason.split()[1] for h in halts] == ["later"]


def test_position_events_carry_money_without_float_noise(core: ExecCore) -> None:
    core.submit(intent("b", units=1_000), OPEN_MS)
    core.on_gateway_event(OrderFilled("b", OPEN_MS, "F1", 1_000, 1.1), OPEN_MS)
    core.submit(intent("s", units=1_000, side=Side.SELL), OPEN_MS)
    out = core.on_gateway_event(OrderFilled("s", OPEN_MS, "F2", 1_000, 1.1003), OPEN_MS)
    (position,) = [e for e in out.events if type(e).__name__ == "PositionEvent"]
    body = msgspec.json.decode(msgspec.json.encode(position))
    # In floats 1000 * (1.1003 - 1.1) is 0.30000000000000115.
    assert (body["realised_pnl"], body["day_realised_pnl"]) == (0.3, 0.3)
    assert b'"realised_pnl":0.3,' in msgspec.json.encode(position)
