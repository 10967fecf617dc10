"""Clocks: the only place runtime code reads the time.

`SystemClock` is wall time; `ManualClock` is moved by its owner (tests, replays driven by tick
time), so loops that wait on the clock run without real sleeps.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Current UTC epoch ms."""
        ...

    async def sleep_until(self, ts_ms: int) -> None:
        """Return once `now_ms() >= ts_ms` (at once if already past)."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep_until(self, ts_ms: int) -> None:
        delay_ms = ts_ms - self.now_ms()
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)


class ManualClock:
    """Time that moves only when told to; sleepers wake when it passes their deadline."""

    def __init__(self, start_ms: int) -> None:
        self._now_ms = start_ms
        self._changed = asyncio.Event()

    def now_ms(self) -> int:
        return self._now_ms

    def set(self, ts_ms: int) -> None:
        """Move to `ts_ms` (never backwards)."""
        if ts_ms < self._now_ms:
            raise ValueError(f"a clock does not go back: {ts_ms} < {self._now_ms}")
        self._now_ms = ts_ms
        self._changed.set()
        self._changed = asyncio.Event()

    def advance(self, delta_ms: int) -> None:
        self.set(self._now_ms + delta_ms)

    async def sleep_until(self, ts_ms: int) -> None:
        while self._now_ms < ts_ms:
            await self._changed.wait()
