"""Every deny reason is reached, through the real core, and the first failing check names it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.model.exec_event import (
    Decision,
    OrderState,
    RiskEvent,
    RiskReason,
    TradingState,
)
from fxconnector.core.model.intent import OrderType, Side
from fxconnector.execution.core import ExecCore
from fxconnector.execution.messages import OrderFilled, SubmitOrder
from fxconnector.execution.risk.validator import Deny
from tests.execution.helpers import CLOSED_MS, OPEN_MS, intent, make_core, quote


def filled(core: ExecCore, intent_id: str, units: int, price: float, now_ms: int) -> None:
    core.on_gateway_event(OrderFilled(intent_id, now_ms, f"F-{intent_id}", units, price), now_ms)


def unknown_trader(core: ExecCore) -> tuple[object, int]:
    return intent(trader="mallory"), OPEN_MS


def symbol_not_allowed(core: ExecCore) -> tuple[object, int]:
    return intent(trader="bob", symbol="USDJPY"), OPEN_MS


def invalid_intent(core: ExecCore) -> tuple[object, int]:
    return intent(type=OrderType.LIMIT, price=None), OPEN_MS


def stale_intent(core: ExecCore) -> tuple[object, int]:
    # One ms past the 60 s default: a queued or replayed decision made long ago.
    return intent(ts=OPEN_MS - 60_001), OPEN_MS


def trading_halted(core: ExecCore) -> tuple[object, int]:
    core.set_trading_state("*", TradingState.HALTED, "operator", OPEN_MS)
    return intent(), OPEN_MS


def market_closed(core: ExecCore) -> tuple[object, int]:
    core.on_price(quote(ts_ms=CLOSED_MS))
    return intent(ts=CLOSED_MS), CLOSED_MS


def no_price(core: ExecCore) -> tuple[object, int]:
    return intent(symbol="USDJPY"), OPEN_MS


def stale_price(core: ExecCore) -> tuple[object, int]:
    return intent(), OPEN_MS + 2_001


def reducing_only(core: ExecCore) -> tuple[object, int]:
    core.set_trading_state("alice", TradingState.REDUCING, "wind down", OPEN_MS)
    return intent(), OPEN_MS


def max_units_per_order(core: ExecCore) -> tuple[object, int]:
    return intent(units=10_001), OPEN_MS


def max_open_position(core: ExecCore) -> tuple[object, int]:
    core.submit(intent("a", units=10_000), OPEN_MS)
    core.submit(intent("b", units=10_000), OPEN_MS)  # working, not filled: counted worst-case
    return intent("c", units=1), OPEN_MS


def max_notional(core: ExecCore) -> tuple[object, int]:
    core.submit(intent("a", units=6_000), OPEN_MS)
    # 16,000 units worst-case (under 20,000) valued at this order's 2.0: 32,000 > 30,000.
    return intent(type=OrderType.LIMIT, price=2.0, units=10_000), OPEN_MS


def max_orders_per_minute(core: ExecCore) -> tuple[object, int]:
    for n in range(5):
        core.submit(intent(f"r{n}", units=1, side=Side.BUY if n % 2 else Side.SELL), OPEN_MS)
    core.on_price(quote(ts_ms=OPEN_MS + 59_999))
    return intent("r5", units=1), OPEN_MS + 59_999


def daily_loss_limit(core: ExecCore) -> tuple[object, int]:
    core.submit(intent("long", units=10_000), OPEN_MS)
    filled(core, "long", 10_000, 1.1002, OPEN_MS)
    core.submit(intent("flat", units=10_000, side=Side.SELL), OPEN_MS)
    filled(core, "flat", 10_000, 1.0950, OPEN_MS)  # realised -52 > 50: auto HALTED
    assert core.trading_state("alice") is TradingState.HALTED
    core.set_trading_state("alice", TradingState.ACTIVE, "resume after review", OPEN_MS)
    return intent("again", units=1_000), OPEN_MS


CASES: dict[RiskReason, Callable[[ExecCore], tuple[object, int]]] = {
    RiskReason.UNKNOWN_TRADER: unknown_trader,
    RiskReason.SYMBOL_NOT_ALLOWED: symbol_not_allowed,
    RiskReason.INVALID_INTENT: invalid_intent,
    RiskReason.STALE_INTENT: stale_intent,
    RiskReason.TRADING_HALTED: trading_halted,
    RiskReason.MARKET_CLOSED: market_closed,
    RiskReason.NO_PRICE: no_price,
    RiskReason.STALE_PRICE: stale_price,
    RiskReason.REDUCING_ONLY: reducing_only,
    RiskReason.MAX_UNITS_PER_ORDER: max_units_per_order,
    RiskReason.MAX_OPEN_POSITION: max_open_position,
    RiskReason.MAX_NOTIONAL: max_notional,
    RiskReason.MAX_ORDERS_PER_MINUTE: max_orders_per_minute,
    RiskReason.DAILY_LOSS_LIMIT: daily_loss_limit,
}


def test_every_reason_has_a_case() -> None:
    # INTENT_ID_CONFLICT is answered without a journal entry: test_core covers it.
    assert set(CASES) | {RiskReason.INTENT_ID_CONFLICT} == set(RiskReason)


@pytest.mark.parametrize("reason", list(CASES))
def test_deny_reason_is_reached_and_journaled(fx_ny: CalendarProfile, reason: RiskReason) -> None:
    core = make_core(fx_ny)
    core.on_price(quote())
    candidate, now_ms = CASES[reason](core)
    submission = core.submit(candidate, now_ms)  # type: ignore[arg-type]
    assert isinstance(submission.decision, Deny)
    assert submission.decision.reason is reason, submission.decision.detail
    assert submission.order is None
    assert submission.output.commands == ()
    (event,) = submission.output.events
    assert isinstance(event, RiskEvent)
    assert (event.decision, event.reason) == (Decision.DENY, reason)
    assert event.seq == core.seq


def test_a_reducing_order_passes_reducing_only_and_the_daily_loss(fx_ny: CalendarProfile) -> None:
    core = make_core(fx_ny)
    core.on_price(quote())
    core.submit(intent("long", units=10_000), OPEN_MS)
    filled(core, "long", 10_000, 1.1002, OPEN_MS)
    core.submit(intent("cut", units=5_000, side=Side.SELL), OPEN_MS)
    filled(core, "cut", 5_000, 1.0900, OPEN_MS)  # realised -51
    assert core.trading_state("alice") is TradingState.HALTED
    core.set_trading_state("alice", TradingState.REDUCING, "reduce only", OPEN_MS)
    more = core.submit(intent("more", units=1, side=Side.BUY), OPEN_MS)
    assert isinstance(more.decision, Deny)
    assert more.decision.reason is RiskReason.REDUCING_ONLY
    reduce = core.submit(intent("reduce", units=5_000, side=Side.SELL), OPEN_MS)
    assert reduce.decision.allowed
    assert reduce.output.commands == (SubmitOrder(reduce.order.intent),)  # type: ignore[union-attr]
    # With that sell working, another sell would take the position through zero: not reducing.
    flip = core.submit(intent("flip", units=1, side=Side.SELL), OPEN_MS)
    assert isinstance(flip.decision, Deny)
    assert flip.decision.reason is RiskReason.REDUCING_ONLY


def test_the_daily_loss_resets_at_the_new_york_trading_day(fx_ny: CalendarProfile) -> None:
    core = make_core(fx_ny)
    core.on_price(quote())
    daily_loss_limit(core)
    # 2026-01-06 is winter: the trading day starts at 22:00 UTC (17:00 New York).
    day_end = OPEN_MS + 10 * 3_600_000
    core.on_price(quote(ts_ms=day_end - 1))
    before = core.submit(intent("before", units=1_000, ts=day_end - 1), day_end - 1)
    assert isinstance(before.decision, Deny)
    assert before.decision.reason is RiskReason.DAILY_LOSS_LIMIT
    core.on_price(quote(ts_ms=day_end))
    after = core.submit(intent("after", units=1_000, ts=day_end), day_end)
    assert after.decision.allowed
    assert core.day_realised_pnl("alice", "EURUSD", day_end) == 0.0
    assert core.position("alice", "EURUSD").realised_pnl == pytest.approx(-52.0)


def test_the_order_rate_is_a_sliding_minute(fx_ny: CalendarProfile) -> None:
    core = make_core(fx_ny)
    core.on_price(quote())
    max_orders_per_minute(core)
    core.on_price(quote(ts_ms=OPEN_MS + 60_000))
    assert core.submit(intent("r6", units=1), OPEN_MS + 60_000).decision.allowed


def test_cancel_is_accepted_while_halted(fx_ny: CalendarProfile) -> None:
    core = make_core(fx_ny)
    core.on_price(quote())
    core.submit(intent("resting", type=OrderType.LIMIT, price=1.05), OPEN_MS)
    core.set_trading_state("*", TradingState.HALTED, "operator", OPEN_MS)
    out = core.cancel("resting", OPEN_MS)
    assert [type(c).__name__ for c in out.commands] == ["CancelOrder"]
    order = core.order("resting")
    assert order is not None
    assert order.cancel_requested
    assert order.state is OrderState.SUBMITTED


def test_an_intent_exactly_at_the_age_bound_passes(fx_ny: CalendarProfile) -> None:
    core = make_core(fx_ny)
    core.on_price(quote())
    assert core.submit(intent("edge", ts=OPEN_MS - 60_000), OPEN_MS).decision.allowed
