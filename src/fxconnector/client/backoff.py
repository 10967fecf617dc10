"""Reconnect delays of the client's readers (the Redis consumer, the HTTP client).

Rules: capped exponential, times a jitter so that many clients do not reconnect in step after
one Redis restart; pure: the caller sleeps, and its own `random.Random` draws the jitter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: `initial_s * 2**(failures - 1)`, capped, times a jitter in [0.5, 1].

    `max_failures` consecutive failures make `run` raise SurfaceUnavailable; None waits for
    Redis for as long as it takes (a surface reader has nothing better to do).
    """

    initial_s: float = 0.1
    cap_s: float = 5.0
    max_failures: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.cap_s:
            raise ValueError(f"need 0 < initial_s <= cap_s, got {self.initial_s}, {self.cap_s}")
        if self.max_failures is not None and self.max_failures < 1:
            raise ValueError(f"max_failures must be at least 1, got {self.max_failures}")

    def delay_s(self, failures: int, rng: random.Random) -> float:
        # The exponent is bounded so the float never overflows on a long outage.
        ceiling = min(self.cap_s, self.initial_s * 2.0 ** min(max(failures - 1, 0), 30))
        # Jitter spreads the reconnects of many consumers after one Redis restart.
        return ceiling * (0.5 + 0.5 * rng.random())
