"""Properties of the core under any sequence of intents, fills, cancels and time:
no configured limit is ever exceeded, and a replay of its events rebuilds the same state."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.model.exec_event import ExecEvent, OrderState, TradingState
from fxconnector.core.model.intent import OrderType, Side
from fxconnector.execution.core import ExecCore, Output
from fxconnector.execution.messages import OrderAccepted, OrderCancelled, OrderFilled
from fxconnector.execution.risk.validator import reference_price
from tests.conftest import calendar_profile
from tests.execution.helpers import LIMITS, OPEN_MS, intent, make_core, quote

SUBMIT = st.tuples(
    st.just("submit"),
    st.sampled_from(["alice", "bob"]),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.one_of(st.integers(1, 1_000), st.integers(4_000, 12_000)),
    st.sampled_from([OrderType.MARKET, OrderType.LIMIT]),
    st.floats(0.9, 1.6),
    # How old the intent's ts is: mostly fresh, sometimes past the 60 s bound.
    st.one_of(st.just(0), st.integers(0, 120_000)),
)
FILL = st.tuples(st.just("fill"), st.integers(0, 50), st.floats(0.05, 1.0), st.floats(1.0, 1.2))
OTHER = st.tuples(st.sampled_from(["cancel", "ack", "cancelled"]), st.integers(0, 50))
WAIT = st.tuples(st.just("wait"), st.integers(0, 20_000))
STATE = st.tuples(
    st.just("state"),
    st.sampled_from(["*", "alice", "bob"]),
    st.sampled_from(list(TradingState)),
)
# Weights: mostly submits and fills, so the limits are reached; a state switch now and then.
STEP = st.integers(0, 99).flatmap(
    lambda k: (
        SUBMIT if k < 45 else FILL if k < 75 else OTHER if k < 85 else WAIT if k < 96 else STATE
    )
)
STEPS = st.lists(STEP, min_size=10, max_size=80)


def run(
    steps: list[tuple[object, ...]], fx_ny: CalendarProfile
) -> tuple[ExecCore, list[ExecEvent]]:
    core = make_core(fx_ny)
    journal: list[ExecEvent] = []
    now = OPEN_MS
    core.on_price(quote(ts_ms=now))
    allowed: dict[str, list[int]] = defaultdict(list)
    fills = 0

    def keep(out: Output) -> None:
        journal.extend(out.events)

    for n, step in enumerate(steps):
        kind = step[0]
        working = sorted(core.open_orders(), key=lambda o: o.intent_id)
        if kind == "submit":
            _, trader, side, units, type_, price, age = step
            assert isinstance(trader, str)
            assert isinstance(side, Side)
            assert isinstance(units, int)
            assert isinstance(type_, OrderType)
            assert isinstance(price, float)
            assert isinstance(age, int)
            candidate = intent(
                f"i{n}",
                trader=trader,
                side=side,
                units=units,
                type=type_,
                price=price if type_ is OrderType.LIMIT else None,
                ts=now - age,
            )
            exposure = core.exposure(trader, "EURUSD")
            day_pnl = core.day_realised_pnl(trader, "EURUSD", now)
            sub = core.submit(candidate, now)
            keep(sub.output)
            if sub.decision.allowed:
                limits = LIMITS.for_symbol(trader, "EURUSD")
                assert limits is not None
                allowed[trader].append(now)
                assert units <= limits.max_units_per_order
                assert age <= LIMITS.max_intent_age_ms
                after = exposure.worst(side, units)
                grows = abs(after) > abs(exposure.worst(side))
                reduces = exposure.reduces(side, units)
                if grows:
                    px = reference_price(candidate, core.quote("EURUSD"))  # type: ignore[arg-type]
                    assert abs(after) * px <= limits.max_notional
                if not reduces:
                    assert -day_pnl < limits.max_daily_loss
                    assert core.trading_state(trader) is TradingState.ACTIVE
                assert core.trading_state(trader) is not TradingState.HALTED
        elif kind == "fill" and working:
            _, index, fraction, price = step
            assert isinstance(index, int)
            assert isinstance(fraction, float)
            assert isinstance(price, float)
            order = working[index % len(working)]
            units = max(1, int(order.remaining_units * fraction))
            fills += 1
            evidence = OrderFilled(order.intent_id, now, f"F{fills}", units, price)
            keep(core.on_gateway_event(evidence, now))
        elif kind in ("cancel", "ack", "cancelled") and working:
            index = step[1]
            assert isinstance(index, int)
            order = working[index % len(working)]
            if kind == "cancel":
                keep(core.cancel(order.intent_id, now))
            elif kind == "ack":
                keep(core.on_gateway_event(OrderAccepted(order.intent_id, now, "B1"), now))
            else:
                keep(core.on_gateway_event(OrderCancelled(order.intent_id, now), now))
        elif kind == "wait":
            wait = step[1]
            assert isinstance(wait, int)
            now += wait
            core.on_price(quote(ts_ms=now))
            keep(core.tick(now))
        elif kind == "state":
            _, scope, state = step
            assert isinstance(scope, str)
            assert isinstance(state, TradingState)
            keep(core.set_trading_state(scope, state, "test", now))
        for trader, trader_limits in LIMITS.traders.items():
            bound = trader_limits.symbols["EURUSD"].max_open_units
            exposure = core.exposure(trader, "EURUSD")
            assert abs(exposure.position) <= bound
            assert exposure.position + exposure.working_buy <= bound
            assert exposure.position - exposure.working_sell >= -bound
    for trader, stamps in allowed.items():
        rate = LIMITS.traders[trader].max_orders_per_minute
        for i, ts in enumerate(stamps):
            assert sum(1 for other in stamps[: i + 1] if other > ts - 60_000) <= rate
    return core, journal


@given(steps=STEPS)
def test_no_sequence_of_intents_exceeds_a_limit(steps: list[tuple[object, ...]]) -> None:
    run(steps, calendar_profile("fx_ny"))


@given(steps=STEPS)
def test_a_replay_of_the_events_rebuilds_the_same_state(steps: list[tuple[object, ...]]) -> None:
    fx_ny = calendar_profile("fx_ny")
    live, journal = run(steps, fx_ny)
    assert [e.seq for e in journal] == list(range(1, len(journal) + 1))
    replayed = make_core(fx_ny)
    replayed.replay(journal)
    assert replayed.seq == live.seq
    assert replayed.orders() == live.orders()
    assert replayed.positions() == live.positions()
    assert replayed.trading_states() == live.trading_states()
    for order in live.orders():
        assert order.state is not OrderState.NEW
        again = replayed.submit(order.intent, OPEN_MS + 10**9)
        assert again.duplicate
        assert again.output.events == ()
        assert again.output.commands == ()
