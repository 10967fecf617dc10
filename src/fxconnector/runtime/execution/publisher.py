"""Publishes the execution journal's events to the public surface (keys.py, execution keys).

Rules:
- Redis is a surface, never the truth: the journal is. Every event goes to `NS:exec:events`
  with the explicit stream id `0-SEQ` (the journal sequence number), so a republish never
  duplicates an entry: ids at or below the stream's last are skipped. The latest order,
  position and trading-state events are written to their hashes, then `NS:exec:seq`.
- Crash-only: on start and after any Redis error the publisher resyncs: it reads the stream's
  last id and `NS:exec:seq`, and writes every event it holds past them plus the full latest
  state of the hashes (a restarted, empty Redis is rebuilt from the journal).
- No retries inside a call: `publish()` raises SurfaceUnavailable and marks a resync; the
  caller calls it again on its next period (the events wait in memory, the journal has them).
- The live process status (`exec_process_v1`) is written every period with a time to live of a
  few periods: it disappears when the process stops or dies.

This module must not know the order state machine, the risk rules or the socket.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.exceptions import RedisError

from fxconnector.core.errors import SurfaceUnavailable
from fxconnector.core.model.exec_event import (
    ExecEvent,
    OrderEvent,
    PositionEvent,
    TradingStateEvent,
)
from fxconnector.core.model.exec_process import ExecProcessStatus
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish.exec_routes import position_key
from fxconnector.runtime.publish.keys import STREAM_FIELD, SurfaceKeys
from fxconnector.runtime.publish.redis_connect import SurfaceClient


class ExecPublisher:
    """Writes events to the execution keys; holds what is not yet published."""

    def __init__(self, redis_client: SurfaceClient, keys: SurfaceKeys, *, maxlen: int) -> None:
        self._redis = redis_client
        self._keys = keys
        self._maxlen = maxlen
        self._orders: dict[str, OrderEvent] = {}
        self._positions: dict[str, PositionEvent] = {}
        self._states: dict[str, TradingStateEvent] = {}
        #: Events not yet in the stream (all of them until the first resync).
        self._pending: list[ExecEvent] = []
        self._resync = True
        self.published_seq = 0
        self.errors = 0

    def add(self, events: Iterable[ExecEvent]) -> None:
        """Queue `events` (journal order) and fold them into the latest state."""
        for event in events:
            self._pending.append(event)
            if isinstance(event, OrderEvent):
                self._orders[event.intent_id] = event
            elif isinstance(event, PositionEvent):
                self._positions[position_key(event.trader, event.symbol)] = event
            elif isinstance(event, TradingStateEvent):
                self._states[event.scope] = event

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def publish(self) -> int:
        """Write what is pending (everything, after a resync); the events written."""
        if not self._pending and not self._resync:
            return 0
        try:
            return await self._write()
        except (RedisError, OSError) as exc:
            self._resync = True
            self.errors += 1
            raise SurfaceUnavailable(f"publishing exec events: {type(exc).__name__}") from exc

    async def publish_process(self, status: ExecProcessStatus, ttl_ms: int) -> None:
        """Write the live process status under `exec_process`, expiring after `ttl_ms`."""
        try:
            await self._redis.set(self._keys.exec_process, encode(status), px=ttl_ms)
        except (RedisError, OSError) as exc:
            self.errors += 1
            raise SurfaceUnavailable(f"publishing the exec status: {type(exc).__name__}") from exc

    async def _write(self) -> int:
        keys = self._keys
        last = 0
        if self._resync:
            last = await self._stream_last_seq()
        events = [e for e in self._pending if e.seq > last]
        pipe: Any = self._redis.pipeline(transaction=False)
        for event in events:
            pipe.xadd(
                keys.exec_events,
                {STREAM_FIELD: encode(event)},
                id=f"0-{event.seq}",
                maxlen=self._maxlen,
                approximate=True,
            )
        if self._resync:
            for key in (keys.exec_orders, keys.exec_positions, keys.exec_risk):
                pipe.delete(key)
            self._hset(pipe, keys.exec_orders, self._orders)
            self._hset(pipe, keys.exec_positions, self._positions)
            self._hset(pipe, keys.exec_risk, self._states)
        else:
            self._hset(
                pipe,
                keys.exec_orders,
                {e.intent_id: e for e in events if isinstance(e, OrderEvent)},
            )
            self._hset(
                pipe,
                keys.exec_positions,
                {
                    position_key(e.trader, e.symbol): e
                    for e in events
                    if isinstance(e, PositionEvent)
                },
            )
            self._hset(
                pipe,
                keys.exec_risk,
                {e.scope: e for e in events if isinstance(e, TradingStateEvent)},
            )
        newest = self._pending[-1].seq if self._pending else self.published_seq
        newest = max(newest, last, self.published_seq)
        pipe.set(keys.exec_seq, newest)
        await pipe.execute()
        self._pending.clear()
        self._resync = False
        self.published_seq = newest
        return len(events)

    @staticmethod
    def _hset(pipe: Any, key: str, values: dict[str, Any]) -> None:
        if values:
            pipe.hset(key, mapping={name: encode(event) for name, event in values.items()})

    async def _stream_last_seq(self) -> int:
        """The journal seq of the stream's newest entry (0 when empty or absent)."""
        newest: Any = await self._redis.xrevrange(self._keys.exec_events, count=1)
        if not newest:
            return 0
        entry_id = newest[0][0]
        text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        return int(text.partition("-")[2] or 0)
