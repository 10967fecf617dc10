"""Durable before published: finals appended to the store, flushed, then handed on.

Rules (DESIGN §5):
- Finals are appended to the store and queued; `publish_durable` takes the queue (and the
  derived bars given) before its flush starts, so that flush covers every one of them even when
  another task (a command, the live loop) appends or publishes meanwhile.
- Flushes are group-committed: writes are numbered; a flush makes every write numbered before
  it started durable, and the callers that arrive while one runs share the next. Nothing is
  handed on before a flush that started after its append has ended.
- A repeated final is a no-op (not queued); a different one is a revision and is queued again.

It knows nothing of the broker, the sink or the builders: `publish` takes what is durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from fxconnector.core.errors import ContractViolation
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.runtime.store.port import AppendOutcome, FinalStore

#: Runs blocking store work (the fsync of a flush) off the event loop: asyncio.to_thread. A test
#: that drives fake time by loop turns runs it inline instead.
Offload = Callable[[Callable[[], None]], Awaitable[None]]
BROKER_CORRECTION = "broker correction"


class DurablePublisher:
    """The store's appends, their group-committed flushes and the hand-over of what is durable."""

    def __init__(
        self,
        store: FinalStore,
        offload: Offload,
        publish: Callable[[Sequence[OhlcvEvent]], None],
        error: Callable[[int, str, str], None],
    ) -> None:
        self._store = store
        self._offload = offload
        self._publish = publish
        self._error = error
        self._pending_publish: list[OhlcvEvent] = []
        self._writes = 0
        self._durable_writes = 0
        self._flush_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    def store_finals(
        self, symbol: str, bars: Sequence[OhlcvEvent], now_ms: int
    ) -> list[OhlcvEvent]:
        """Append `bars`; the new bars and revisions (queued for publishing) are returned."""
        if not bars:
            return []
        try:
            results = self._store.append(bars, reason=BROKER_CORRECTION)
        except ContractViolation as exc:  # pragma: no cover - check_history refused these
            self._error(now_ms, "store.refused", f"{symbol}: {exc}")
            return []
        fresh: list[OhlcvEvent] = [
            r.stored for r in results if r.outcome is not AppendOutcome.DUPLICATE
        ]
        self._pending_publish.extend(fresh)
        return fresh

    async def publish_durable(
        self, derived: Sequence[OhlcvEvent], flush: bool, *, coverage: bool = False
    ) -> None:
        """Flush (off the event loop) then publish what is pending now and `derived`.

        The events are taken before the flush starts, so the flush covers every one of them
        even when another task (a command, the live loop) appends or publishes meanwhile;
        `coverage` flushes even with nothing to publish (coverage lines were written)."""
        events = [*self._pending_publish, *derived]
        self._pending_publish.clear()
        if flush and (events or coverage):
            self._writes += 1
            await self._durable(self._writes)
        self._publish(events)

    async def _durable(self, write: int) -> None:
        """Return once a flush that started after write number `write` has ended: the flush
        in progress is waited for, then one flush serves every caller queued behind it."""
        loop = asyncio.get_running_loop()
        if self._flush_lock is None or self._flush_lock[0] is not loop:
            self._flush_lock = (loop, asyncio.Lock())
        async with self._flush_lock[1]:
            if self._durable_writes >= write:
                return
            covered = self._writes
            await self._offload(self._store.flush)
            self._durable_writes = max(self._durable_writes, covered)
