"""`prove_quiet`: the one rule for quiet minutes (issue 11, point 1)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.coverage import prove_quiet
from fxconnector.core.time_geom import MINUTE_MS

T0 = 1_709_733_600_000
M = MINUTE_MS


def test_trailing_empty_minutes_of_an_answer_are_not_quiet() -> None:
    # a one-hour request answered with its first half: the second half is pending, not quiet
    proof = prove_quiet(T0, T0 + 60 * M, [T0 + i * M for i in range(30)])
    assert proof.quiet == [(T0, T0 + 30 * M)]
    assert proof.proven_until_ms == T0 + 30 * M
    # an empty answer proves nothing
    assert prove_quiet(T0, T0 + M, []).quiet == []


def test_a_later_bar_or_the_brokers_signal_proves_the_gap_before_it() -> None:
    proof = prove_quiet(T0, T0 + 10 * M, [T0, T0 + 7 * M])
    assert proof.quiet == [(T0, T0 + 8 * M)]
    signal = prove_quiet(T0, T0 + 10 * M, [T0], passed_until_ms=T0 + 9 * M + 5)
    assert signal.proven_until_ms == T0 + 9 * M
    assert signal.quiet == [(T0, T0 + 9 * M)]


def test_doubtful_minutes_are_never_quiet() -> None:
    proof = prove_quiet(T0, T0 + 10 * M, [T0, T0 + 9 * M], doubtful=[T0 + 3 * M, T0 + 4 * M])
    assert proof.quiet == [(T0, T0 + 3 * M), (T0 + 5 * M, T0 + 10 * M)]
    assert proof.doubtful == [T0 + 3 * M, T0 + 4 * M]
    # a doubtful minute that has its bar is simply final
    assert prove_quiet(T0, T0 + 2 * M, [T0, T0 + M], doubtful=[T0]).doubtful == []


@given(
    st.sets(st.integers(0, 59)),
    st.sets(st.integers(0, 59)),
    st.none() | st.integers(0, 61),
)
def test_quiet_never_covers_a_doubtful_or_unproven_minute(
    bars: set[int], doubtful: set[int], passed: int | None
) -> None:
    proof = prove_quiet(
        T0,
        T0 + 60 * M,
        [T0 + b * M for b in bars],
        doubtful=[T0 + d * M for d in doubtful],
        passed_until_ms=None if passed is None else T0 + passed * M,
    )
    last = max(bars, default=-1) + 1
    proven = min(60, max(last, passed or 0))
    assert proof.proven_until_ms == T0 + proven * M
    quiet = {(a - T0) // M + i for a, b in proof.quiet for i in range((b - a) // M)}
    assert quiet == {m for m in range(proven) if m in bars or m not in doubtful}
