"""The history budget every broker-history call goes through (DESIGN §9).

Rules:
- A token bucket: `requests_per_min` tokens (default 30), refilled continuously.
- One request in flight per process.
- Two priorities: the 1m close fast path (`Priority.FAST`) is served before any heavy command
  (`Priority.HEAVY`: warmup, backfill, repair); a heavy caller never takes the slot or a token
  while a fast caller is waiting, and never the last `fast_reserve` tokens.
- Over budget, work waits (it is deferred, never dropped) and `deferred_reason` says why, for
  status. The budget is keyed by the names callers really have (`fast_path`, `warmup`, ...):
  `requests_by_caller` counts them, so a misnamed caller shows up instead of escaping the rails.
- Time comes from the injected Clock, so tests run it on a ManualClock.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import IntEnum

from fxconnector.runtime.clock import Clock


class Priority(IntEnum):
    FAST = 0
    HEAVY = 1


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    requests_per_min: int = 30
    burst: int = 30
    max_chunk_minutes: int = 240
    #: Tokens only the fast path may take, so heavy work never makes a final wait for a refill.
    fast_reserve: int = 2


class HistoryBudget:
    """Token bucket + single in-flight slot, fast path first."""

    def __init__(self, clock: Clock, config: BudgetConfig | None = None) -> None:
        self._clock = clock
        self.config = config or BudgetConfig()
        self._tokens = float(self.config.burst)
        self._stamp_ms = clock.now_ms()
        self._busy = False
        self._waiting = {Priority.FAST: 0, Priority.HEAVY: 0}
        self._changed = asyncio.Event()
        self.requests_by_caller: collections.Counter[str] = collections.Counter()
        self.waits_by_caller: collections.Counter[str] = collections.Counter()
        self.deferred_reason: str | None = None

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    @asynccontextmanager
    async def slot(self, caller: str, priority: Priority) -> AsyncIterator[None]:
        """Hold the in-flight slot and one token for one history request."""
        await self._acquire(caller, priority)
        try:
            yield
        finally:
            self._busy = False
            self._wake()

    async def _acquire(self, caller: str, priority: Priority) -> None:
        self._waiting[priority] += 1
        waited = False
        try:
            while True:
                self._refill()
                heavy = priority is Priority.HEAVY
                needed = 1.0 + (self.config.fast_reserve if heavy else 0)
                blocked_by_fast = heavy and self._waiting[Priority.FAST]
                if not self._busy and not blocked_by_fast and self._tokens >= needed:
                    self._tokens -= 1.0
                    self._busy = True
                    self.requests_by_caller[caller] += 1
                    if priority is Priority.HEAVY:
                        self.deferred_reason = None
                    return
                if not waited:
                    waited = True
                    self.waits_by_caller[caller] += 1
                if heavy and self._tokens < needed:
                    self.deferred_reason = (
                        f"{caller}: history budget exhausted "
                        f"({self.config.requests_per_min} requests/min); resuming when refilled"
                    )
                await self._wait(self._next_token_ms(needed) if self._tokens < needed else None)
        finally:
            self._waiting[priority] -= 1

    def _refill(self) -> None:
        now = self._clock.now_ms()
        elapsed = now - self._stamp_ms
        if elapsed > 0:
            rate_per_ms = self.config.requests_per_min / 60_000
            self._tokens = min(float(self.config.burst), self._tokens + elapsed * rate_per_ms)
            self._stamp_ms = now

    def _next_token_ms(self, needed: float) -> int:
        missing = needed - self._tokens
        return self._stamp_ms + int(missing * 60_000 / self.config.requests_per_min) + 1

    async def _wait(self, until_ms: int | None) -> None:
        changed = self._changed
        if until_ms is None:
            await changed.wait()
            return
        sleeper = asyncio.ensure_future(self._clock.sleep_until(until_ms))
        waiter = asyncio.ensure_future(changed.wait())
        _done, pending = await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
