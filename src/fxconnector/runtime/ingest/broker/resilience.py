"""Reconnect discipline shared by every broker adapter (DESIGN §10, §14).

Rules:
- `Backoff`: capped exponential delays with full jitter, reset after a connection has been
  healthy for `reset_after_s`; never uncapped, never a tight loop (cryptofeed #349).
- `Watchdog`: a stream that stays connected but delivers nothing for `silence_s` while the market
  is open is a fault (nautilus_trader #4298); the adapter reconnects and reports `stale`.
- `RateGate`: at most `per_second` new connections per second (OANDA's limit is 2).
Only transient errors are retried; a parse error is counted, never a reason to reconnect.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Delays for consecutive failures: min(cap, base * 2**n) with full jitter."""

    base_s: float = 0.5
    cap_s: float = 30.0
    reset_after_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0
    _healthy_since_s: float | None = None

    def next_delay(self) -> float:
        """The delay before the next attempt, after one more failure."""
        ceiling = min(self.cap_s, self.base_s * 2.0**self.failures)
        self.failures += 1
        self._healthy_since_s = None
        return self.rng.uniform(ceiling / 2.0, ceiling)

    def healthy(self, now_s: float) -> None:
        """The connection works; after `reset_after_s` of that, start again from `base_s`."""
        if self._healthy_since_s is None:
            self._healthy_since_s = now_s
        elif now_s - self._healthy_since_s >= self.reset_after_s:
            self.failures = 0


@dataclass(slots=True)
class Watchdog:
    """Notices a connected stream that has gone silent while it should be talking."""

    silence_s: float
    last_data_s: float | None = None

    def data(self, now_s: float) -> None:
        """A message (data or heartbeat) arrived."""
        self.last_data_s = now_s

    def silent(self, now_s: float, market_open: bool) -> bool:
        """True when the market is open and nothing arrived for `silence_s`."""
        if not market_open or self.last_data_s is None:
            return False
        return now_s - self.last_data_s >= self.silence_s


@dataclass(slots=True)
class RateGate:
    """At most `per_second` openings in any one-second window."""

    per_second: int = 2
    _recent: deque[float] = field(default_factory=deque)

    def wait_s(self, now_s: float) -> float:
        """How long to wait before opening a new connection now (0 when allowed)."""
        while self._recent and now_s - self._recent[0] >= 1.0:
            self._recent.popleft()
        if len(self._recent) < self.per_second:
            return 0.0
        return 1.0 - (now_s - self._recent[0])

    def opened(self, now_s: float) -> None:
        self._recent.append(now_s)
