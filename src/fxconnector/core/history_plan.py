"""The history budget's plan for the 1m fast path (issue 12): which symbol is asked when, and how
late a final can be.

Rules:
- The broker allows `requests_per_min` history requests (B), one in flight. `reserved_per_min`
  of them are left to commands and the scheduled repair; the fast path plans with the rest
  (F = B - reserved). One request in flight also caps the calls a minute holds: with every
  call taking up to `call_allowance_ms` (L), at most floor(60 s / L) - reserved fast-path calls
  fit in a minute beside the reserved ones. The fast path's capacity C is the smaller of the two;
  a config where it is below 1 cannot keep up and is refused.
- None of our brokers answers several symbols in one request, so when N symbols do not fit in F
  requests a minute, minutes are batched per symbol: each symbol is asked once every
  `every_minutes` (k = ceil(N / F)) minutes, for all the minutes it has not fetched yet. Symbol
  number i (in config order) is asked at the minute boundaries whose minute index is i mod k:
  a fixed round-robin, so every symbol is asked once in every k consecutive minutes and at most
  ceil(N / k) <= C symbols are asked at one boundary.
- The bound: a minute that ends just after its symbol's turn waits (k - 1) minutes for the next
  turn, then the safety delay, then at most one heavy call already in flight and the calls of
  its group (one at a time), each within `call_allowance_ms`:
  (k - 1) * 60 s + safety delay + (group + 1) * allowance.
- Pure arithmetic: no clock, no I/O. The runtime enforces the plan (the fast path follows
  `due`, the budget keeps `group_size` tokens for the fast path).
"""

from __future__ import annotations

from dataclasses import dataclass

from fxconnector.core.time_geom import MINUTE_MS


@dataclass(frozen=True, slots=True)
class HistoryPlan:
    """The fast path's share of the history budget and the final-lag bound it gives."""

    symbols: int
    requests_per_min: int
    reserved_per_min: int
    safety_delay_ms: int
    call_allowance_ms: int
    #: k: each symbol is asked once every this many minutes (1: every minute).
    every_minutes: int
    #: Symbols asked at one minute boundary at most (<= capacity).
    group_size: int

    @property
    def fast_per_min(self) -> int:
        """Requests a minute the fast path plans with."""
        return self.requests_per_min - self.reserved_per_min

    @property
    def capacity(self) -> int:
        """Fast-path calls a minute can hold: the budget's share, or what one call in flight
        at the allowance leaves beside the reserved calls, whichever is smaller."""
        return _capacity(self.fast_per_min, self.reserved_per_min, self.call_allowance_ms)

    @property
    def bound_ms(self) -> int:
        """Worst-case time from a minute's end to its final (steady state, answers in time)."""
        return (
            (self.every_minutes - 1) * MINUTE_MS
            + self.safety_delay_ms
            + (self.group_size + 1) * self.call_allowance_ms
        )

    def slot(self, index: int) -> int:
        """The turn of symbol number `index` (config order): asked when minute % k == slot."""
        return index % self.every_minutes

    def due(self, index: int, minute_index: int) -> bool:
        """True when symbol number `index` is asked at the boundary opening `minute_index`
        (minute_index = the boundary's epoch ms // 60,000)."""
        return minute_index % self.every_minutes == self.slot(index)

    def asked_at(self, minute_index: int) -> list[int]:
        """The symbol numbers asked at the boundary opening `minute_index`."""
        return list(range(minute_index % self.every_minutes, self.symbols, self.every_minutes))

    def describe(self) -> str:
        """One line with the numbers, for the start log and a refusal."""
        return (
            f"{self.symbols} symbols, {self.requests_per_min} history requests/min "
            f"({self.reserved_per_min} reserved for commands and repair): each symbol asked "
            f"every {self.every_minutes} min, {self.group_size} per minute at most; "
            f"worst-case final lag {self.bound_ms / 1000:g} s (safety delay "
            f"{self.safety_delay_ms / 1000:g} s, {self.call_allowance_ms / 1000:g} s per call)"
        )


def plan_history(
    symbols: int,
    requests_per_min: int,
    *,
    reserved_per_min: int,
    safety_delay_ms: int,
    call_allowance_ms: int,
) -> HistoryPlan:
    """The plan for `symbols` symbols on a budget of `requests_per_min`; ValueError when the
    numbers leave the fast path nothing (or make no sense)."""
    if symbols < 1:
        raise ValueError(f"a plan needs at least one symbol, not {symbols}")
    if reserved_per_min < 0 or safety_delay_ms < 0 or call_allowance_ms < 0:
        raise ValueError("reserved requests, safety delay and call allowance are >= 0")
    fast = requests_per_min - reserved_per_min
    if fast < 1:
        raise ValueError(
            f"{requests_per_min} history requests/min with {reserved_per_min} reserved for "
            "commands and repair leave the 1m fast path none"
        )
    capacity = _capacity(fast, reserved_per_min, call_allowance_ms)
    if capacity < 1:
        raise ValueError(
            f"one history call in flight at {call_allowance_ms / 1000:g} s a call cannot serve "
            f"the fast path beside {reserved_per_min} reserved calls a minute"
        )
    every = -(-symbols // capacity)
    return HistoryPlan(
        symbols=symbols,
        requests_per_min=requests_per_min,
        reserved_per_min=reserved_per_min,
        safety_delay_ms=safety_delay_ms,
        call_allowance_ms=call_allowance_ms,
        every_minutes=every,
        group_size=-(-symbols // every),
    )


def _capacity(fast_per_min: int, reserved_per_min: int, call_allowance_ms: int) -> int:
    if call_allowance_ms == 0:
        return fast_per_min
    return min(fast_per_min, MINUTE_MS // call_allowance_ms - reserved_per_min)
