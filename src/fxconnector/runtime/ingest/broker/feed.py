"""The broker port's two iterators, fed by an adapter's connection task (shared by the adapters
that keep a live connection: fxcm, oanda).

Rules: ticks and session events go through bounded queues; a stalled consumer loses the oldest
ticks (counted in `ticks_dropped`), never the newest, and the newest session events are kept.
`ticks()` ends when the broker is closed and drained, and raises the adapter's fatal error (bad
credentials, a missing interpreter) instead of ending quietly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from fxconnector.core.errors import BrokerDisconnected
from fxconnector.core.model.status import BrokerState
from fxconnector.core.model.tick import Tick
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.ingest.broker.port import SessionEvent


class QueueFedBroker:
    """Mix-in: `ticks()`, `session_events()` and the bookkeeping behind them."""

    _feed_name: str
    _feed_log: logging.Logger
    _tick_buffer: int
    _session_buffer: int
    _clock: Clock
    _ticks: asyncio.Queue[Tick | None]
    _session: asyncio.Queue[SessionEvent]
    _task: asyncio.Task[None] | None
    _fatal: Exception | None
    _closed: bool
    _state: BrokerState
    #: Oldest ticks dropped because nobody consumed `ticks()` fast enough.
    ticks_dropped: int

    def _init_feed(
        self, name: str, log: logging.Logger, tick_buffer: int, session_buffer: int
    ) -> None:
        self._feed_name = name
        self._feed_log = log
        self._tick_buffer = tick_buffer
        self._session_buffer = session_buffer
        self._ticks = asyncio.Queue()
        self._session = asyncio.Queue()
        self._task = None
        self._fatal = None
        self._closed = False
        self._state = BrokerState.DISCONNECTED
        self.ticks_dropped = 0

    @property
    def state(self) -> BrokerState:
        """The session's current state."""
        return self._state

    async def ticks(self) -> AsyncIterator[Tick]:
        """Ticks stamped with the broker's time, until closed; raises the fatal error."""
        if self._task is None and not self._closed:
            raise BrokerDisconnected(f"{self._feed_name}: ticks() before connect()")
        while True:
            if self._fatal is not None:
                raise self._fatal
            if self._closed and self._ticks.empty():
                return
            tick = await self._ticks.get()
            if tick is None:
                continue  # closed or failed: the checks above say which
            yield tick

    async def session_events(self) -> AsyncIterator[SessionEvent]:
        """Session state changes, until STOPPED (then the iterator ends)."""
        while True:
            event = await self._session.get()
            yield event
            if event.state is BrokerState.STOPPED:
                return

    def _set_state(self, state: BrokerState, detail: str) -> None:
        self._state = state
        if self._session.qsize() >= self._session_buffer:
            self._session.get_nowait()  # nobody listens: keep the newest
        self._session.put_nowait(SessionEvent(self._clock.now_ms(), state, detail))
        self._feed_log.info(
            f"{self._feed_name}.session", extra={"fields": {"state": state.value, "detail": detail}}
        )

    def _put(self, tick: Tick | None) -> None:
        if self._ticks.qsize() >= self._tick_buffer:
            self._ticks.get_nowait()  # a stalled consumer loses the oldest, never the newest
            self.ticks_dropped += 1
        self._ticks.put_nowait(tick)
