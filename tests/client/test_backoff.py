"""Backoff: the client's reconnect delays (pure, no Redis)."""

from __future__ import annotations

import random

import pytest

from fxconnector.client.backoff import Backoff


def test_backoff_is_capped_exponential_with_jitter() -> None:
    backoff = Backoff(initial_s=0.1, cap_s=1.0)
    rng = random.Random(7)
    for failures, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (500, 1.0)]:
        delays = [backoff.delay_s(failures, rng) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(initial_s=2.0, cap_s=1.0)
