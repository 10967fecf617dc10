"""Backoff is capped and jittered and resets; the watchdog and the rate gate do their one job."""

from __future__ import annotations

import random

from fxconnector.runtime.ingest.broker.resilience import Backoff, RateGate, Watchdog


def test_backoff_is_capped_jittered_and_resets() -> None:
    backoff = Backoff(base_s=0.5, cap_s=8.0, reset_after_s=60.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(10)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(d <= 8.0 for d in delays)
    assert max(delays[5:]) > 4.0  # it does grow to the cap's neighbourhood
    assert len(set(delays)) == len(delays)  # jitter: no two alike
    backoff.healthy(100.0)
    backoff.healthy(130.0)
    assert backoff.failures == 10  # not healthy long enough yet
    backoff.healthy(160.0)
    assert backoff.failures == 0
    assert backoff.next_delay() <= 0.5


def test_watchdog_only_barks_while_the_market_is_open() -> None:
    dog = Watchdog(silence_s=10.0)
    assert not dog.silent(100.0, market_open=True)  # nothing seen yet: not silence
    dog.data(100.0)
    assert not dog.silent(109.9, market_open=True)
    assert dog.silent(110.0, market_open=True)
    assert not dog.silent(500.0, market_open=False)


def test_rate_gate_allows_two_per_second() -> None:
    gate = RateGate(per_second=2)
    assert gate.wait_s(0.0) == 0.0
    gate.opened(0.0)
    gate.opened(0.1)
    assert abs(gate.wait_s(0.5) - 0.5) < 1e-9
    assert gate.wait_s(1.0) == 0.0
