"""The history plan: every symbol asked once in every k minutes, never more than the fast path's
share at one boundary, and a bound no simulated minute exceeds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.history_plan import HistoryPlan, plan_history
from fxconnector.core.time_geom import MINUTE_MS

plans = st.builds(
    lambda n, b, r, delay, allowance: plan_history(
        n, b + r, reserved_per_min=r, safety_delay_ms=delay, call_allowance_ms=allowance
    ),
    st.integers(1, 2_000),
    st.integers(1, 6_000),
    st.integers(0, 20),
    st.integers(0, 600_000),
    st.integers(0, 2_000),
)


def test_the_default_budget_asks_every_symbol_every_minute_up_to_28_symbols() -> None:
    plan = plan_history(28, 30, reserved_per_min=2, safety_delay_ms=2_000, call_allowance_ms=1_000)
    assert (plan.every_minutes, plan.group_size, plan.fast_per_min) == (1, 28, 28)
    assert plan.bound_ms == 2_000 + 29 * 1_000
    assert plan.asked_at(12_345) == list(range(28))


def test_slow_calls_batch_minutes_even_on_a_large_budget() -> None:
    plan = plan_history(
        200, 6_000, reserved_per_min=2, safety_delay_ms=2_000, call_allowance_ms=1_000
    )
    # 60 calls of 1 s fit in a minute, 2 of them reserved: 58 symbols a minute.
    assert (plan.capacity, plan.every_minutes, plan.group_size) == (58, 4, 50)


def test_past_the_budget_minutes_are_batched_per_symbol() -> None:
    plan = plan_history(100, 30, reserved_per_min=2, safety_delay_ms=2_000, call_allowance_ms=1_000)
    assert (plan.every_minutes, plan.group_size) == (4, 25)
    assert plan.bound_ms == 3 * MINUTE_MS + 2_000 + 26 * 1_000
    assert plan.asked_at(8) == list(range(0, 100, 4))
    assert plan.asked_at(9) == list(range(1, 100, 4))
    assert plan.due(5, 9)
    assert not plan.due(5, 8)
    line = plan.describe()
    for number in ("100 symbols", "30 history requests/min", "every 4 min", "208 s"):
        assert number in line


def test_a_budget_that_leaves_the_fast_path_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="leave the 1m fast path none"):
        plan_history(3, 2, reserved_per_min=2, safety_delay_ms=0, call_allowance_ms=0)
    with pytest.raises(ValueError, match="cannot serve the fast path"):
        plan_history(3, 6_000, reserved_per_min=2, safety_delay_ms=0, call_allowance_ms=25_000)
    with pytest.raises(ValueError, match="at least one symbol"):
        plan_history(0, 30, reserved_per_min=2, safety_delay_ms=0, call_allowance_ms=0)


@given(plans)
def test_every_symbol_is_asked_once_in_every_k_consecutive_minutes(plan: HistoryPlan) -> None:
    for start in (0, 7, 1_000_003):
        asked = [i for m in range(start, start + plan.every_minutes) for i in plan.asked_at(m)]
        assert sorted(asked) == list(range(plan.symbols))
        assert all(plan.due(i, m) for m in range(start, start + 3) for i in plan.asked_at(m))


@given(plans, st.integers(0, 10_000_000))
def test_no_boundary_asks_more_than_the_fast_share(plan: HistoryPlan, minute: int) -> None:
    assert len(plan.asked_at(minute)) <= plan.group_size <= plan.capacity <= plan.fast_per_min
    assert plan.every_minutes == 1 or plan.symbols > plan.capacity
    # The batching is as fine as the budget allows: one minute fewer would not fit.
    assert plan.every_minutes == 1 or -(-plan.symbols // (plan.every_minutes - 1)) > (plan.capacity)
    # One call in flight: the group and the reserved calls fit in a minute at the allowance.
    assert (plan.group_size + plan.reserved_per_min) * plan.call_allowance_ms <= MINUTE_MS


@given(plans, st.data())
def test_no_minute_waits_longer_than_the_bound(plan: HistoryPlan, data: st.DataObject) -> None:
    """Simulate the schedule: the minute `m` of symbol `i` is fetched at the first boundary
    from its end that is the symbol's turn, after the safety delay, one heavy call in flight
    and the calls before it in its group, each taking the whole allowance."""
    i = data.draw(st.integers(0, plan.symbols - 1))
    m = data.draw(st.integers(0, 10_000_000))
    boundary = m + 1
    while not plan.due(i, boundary):
        boundary += 1
    position = plan.asked_at(boundary).index(i)
    arrives = boundary * MINUTE_MS + plan.safety_delay_ms + (position + 2) * plan.call_allowance_ms
    assert arrives - (m + 1) * MINUTE_MS <= plan.bound_ms


@given(plans, st.integers(1, 100), st.integers(1, 100))
def test_more_symbols_never_lower_the_bound_and_more_budget_never_raises_it(
    plan: HistoryPlan, more_symbols: int, more_budget: int
) -> None:
    def replan(symbols: int, budget: int) -> HistoryPlan:
        return plan_history(
            symbols,
            budget,
            reserved_per_min=plan.reserved_per_min,
            safety_delay_ms=plan.safety_delay_ms,
            call_allowance_ms=plan.call_allowance_ms,
        )

    assert replan(plan.symbols + more_symbols, plan.requests_per_min).bound_ms >= plan.bound_ms
    assert replan(plan.symbols, plan.requests_per_min + more_budget).bound_ms <= plan.bound_ms
