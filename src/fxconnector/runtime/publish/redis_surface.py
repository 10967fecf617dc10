"""The writer of the public Redis surface (DESIGN §7; key layout and entry format in keys.py).

Rules:
- `finals`, `previews` and `tick` are synchronous and never touch the network: they queue
  (surface_queue.py: finals never dropped, previews and ticks coalesced, NoMix).
- A final is applied to the tail cache when the surface accepts it (`finals`), so the tail and
  every snapshot computed from it include all accepted finals, published or still queued.
- `run()` publishes every cycle, at most `preview_interval_ms` apart and at once when finals are
  queued: finals first (one script call per series batch: XADD the events, then the snapshot's
  bars and cursor, atomically; see surface_lua.py), then coalesced previews (one script call per
  events stream), then ticks (one HSET, or a SET per symbol in the cluster layout); all of one
  cycle in one pipelined round trip (per cluster node: redis-py's cluster pipeline groups the
  commands by node, and every command or script touches one symbol's slot only).
- Both layouts (keys.py) take the same paths; what differs (a symbol's stream key, the tick
  write) is in surface_writes.py. Streams are trimmed by time (`MINID ~ now - retention`).
- `NS:symbols` gets this process's symbols (SADD at every rebuild and on a first publish).
- Leases (leases.py, when given): taken or extended at every rebuild and every third of their
  TTL; a symbol lost to another process is no longer published (its queued and later events are
  dropped and counted in `unpublished`, never silently: one `lease.lost` entry in `errors`).
- Redis is a surface, never the truth: any Redis error (refused, timeout, NOSCRIPT after a
  restart, ...) marks the surface DEGRADED, keeps every final queued, counts the error and
  retries with capped exponential backoff and jitter. Recovery always starts with `rebuild()`
  from the tail (itself rebuilt from the SSOT), then publishes the queue. A Redis that restarted
  between two calls is noticed by a periodic probe (a stream it wrote is gone: one EXISTS per
  stream, so a cluster master restarted empty is noticed too) and rebuilt too.
  Delivery is at least once: an event may appear twice after a recovery, never zero times.
- Redis exceptions are translated at this boundary into SurfaceUnavailable; `run()` never raises
  for them, and anything else (a bug) propagates.
- `errors` keeps the outages for status `errors[]` (surface_outages.py: one entry per
  outage, not one per retry).

This module must not know the store, the broker or the pipeline; time comes from the Clock, except
the publish latency, which is measured with the monotonic clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from fxconnector.core.errors import ContractViolation, SurfaceUnavailable
from fxconnector.core.model.bar import OhlcvEvent, StoredFinal
from fxconnector.core.model.status import ErrorEntry, SurfaceState
from fxconnector.core.model.tick import Tick
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.leases import SymbolLeases
from fxconnector.runtime.publish.redis_connect import SurfaceClient
from fxconnector.runtime.publish.redis_errors import redis_errors
from fxconnector.runtime.publish.status_writer import StatusPayloads, write_status
from fxconnector.runtime.publish.surface_lua import Series
from fxconnector.runtime.publish.surface_outages import Outages
from fxconnector.runtime.publish.surface_queue import Key, PublishQueue
from fxconnector.runtime.publish.surface_writes import SCRIPTS, SurfacePipeline, SurfaceWrites
from fxconnector.runtime.store.cache_tail import TailCache
from fxconnector.runtime.store.rules import to_stored

log = logging.getLogger(__name__)

#: How often the loop checks that Redis still holds the stream it wrote (a restart empties it).
PROBE_INTERVAL_MS: Final = 1_000
#: With `preview_interval_ms = 0` previews wake the loop; this bounds its sleep otherwise.
IDLE_WAKE_MS: Final = 1_000
#: Series per pipelined round trip during a rebuild (each carries up to two windows of bars).
REBUILD_SERIES_PER_CALL: Final = 16

PublishedHook = Callable[[OhlcvEvent, float], None]


class RedisSurface:
    """Queues bar events and publishes them to Redis; an EventSink."""

    def __init__(
        self,
        redis_client: SurfaceClient,
        keys: SurfaceKeys,
        tail: TailCache,
        *,
        events_retention_s: int,
        snapshot_bars: int,
        preview_interval_ms: int,
        clock: Clock,
        symbols: Sequence[str] = (),
        leases: SymbolLeases | None = None,
        on_published: PublishedHook | None = None,
        on_redis_error: Callable[[], None] | None = None,
    ) -> None:
        if events_retention_s < 1 or snapshot_bars < 1 or preview_interval_ms < 0:
            raise ContractViolation(
                "surface: events_retention_s and snapshot_bars must be >= 1, "
                "preview_interval_ms >= 0"
            )
        self._redis = redis_client
        self._keys = keys
        self._tail = tail
        self._symbols = tuple(symbols)
        self._leases = leases
        self._registered: set[str] = set()  # symbols already in NS:symbols
        self._snapshot_bars = snapshot_bars
        self._interval_ms = preview_interval_ms
        self._clock = clock
        self._on_published = on_published
        self._writes = SurfaceWrites(keys, retention_ms=events_retention_s * 1000, clock=clock)
        self._queue = PublishQueue()
        self._state = SurfaceState.REBUILDING
        self._lock = asyncio.Lock()  # one publisher at a time: run() and a direct rebuild()
        self._wake = asyncio.Event()  # finals queued (or stop): cycle now
        self._stop = asyncio.Event()
        self._flushed = asyncio.Event()  # replaced after every flush; drain() waits on it
        self._done = asyncio.Event()
        self._running = False
        self._flushing = False
        self._streams_written: set[str] = set()
        self._next_probe_ms = 0
        self.published_finals = 0
        self.published_previews = 0
        #: Events of a symbol whose lease another process took (not published; in the SSOT).
        self.unpublished = 0
        self._outages = Outages(clock, on_redis_error)

    # -- the EventSink side: synchronous, no network -------------------------------------------

    def finals(self, events: Sequence[OhlcvEvent]) -> None:
        """Queue durable finals; each is applied to the tail cache now."""
        if not events:
            return
        now_s = time.monotonic()
        for event in events:
            if not event.complete:
                raise ContractViolation(f"surface.finals got a preview: {event.key}")
            stored = event if isinstance(event, StoredFinal) else to_stored(event, event.rev, "")
            self._tail.apply(stored)
            if not self._owns(event.symbol):
                self.unpublished += 1
                continue
            self._queue.final(event, now_s)
        self._wake.set()

    def previews(self, events: Sequence[OhlcvEvent]) -> None:
        """Queue previews, keeping the latest per (symbol, tf); NoMix ones are dropped."""
        for event in events:
            if not self._owns(event.symbol):
                self.unpublished += 1
                continue
            self._queue.preview(event)
        if self._interval_ms == 0 and events:
            self._wake.set()

    def tick(self, tick: Tick) -> None:
        """Queue the last tick of a symbol for the tick cache."""
        if not self._owns(tick.symbol):
            return
        self._queue.tick(tick)
        if self._interval_ms == 0:
            self._wake.set()

    # -- observable state -----------------------------------------------------------------------

    @property
    def state(self) -> SurfaceState:
        return self._state

    @property
    def backlog(self) -> int:
        """Finals accepted and not yet acknowledged by Redis."""
        return len(self._queue.finals)

    @property
    def pending(self) -> bool:
        """True while anything (finals, previews, ticks) is queued or being published."""
        return bool(self._queue) or self._flushing

    @property
    def errors(self) -> deque[ErrorEntry]:
        """Outages (one entry each) and lost leases for status errors[], newest last."""
        return self._outages.errors

    @property
    def last_error(self) -> str | None:
        """The last Redis error."""
        return self._outages.last_error

    @property
    def nomix_dropped(self) -> int:
        """Previews not published because their series had a final as new or newer (NoMix)."""
        return self._queue.nomix_dropped

    # -- direct writes --------------------------------------------------------------------------

    async def write_status(self, payloads: StatusPayloads, ttl_s: int) -> bool:
        """Write the live status (summary and per-symbol details, see status_writer) with an
        expiry; False (counted) when Redis is unavailable."""
        with self._outages.counting(), redis_errors("write status"):
            now_ms = self._clock.now_ms()
            await write_status(self._redis, self._keys, payloads, ttl_s=ttl_s, now_ms=now_ms)
            return True
        return False

    async def write_status_snapshot(self, json: bytes) -> bool:
        """SET `last_command` and `errors[]`; False (counted) when Redis is unavailable."""
        with self._outages.counting(), redis_errors("SET status snapshot"):
            await self._redis.set(self._keys.status_snapshot, json)
            return True
        return False

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Publish until `stop()`; Redis errors degrade and retry, bugs propagate."""
        if self._running:
            raise ContractViolation("RedisSurface.run() is already running")
        self._running = True
        try:
            await self._loop()
        finally:
            self._running = False
            self._state = SurfaceState.DOWN
            self._done.set()
            self._pulse_flushed()  # a drain() waiting on a flush learns that none will come

    async def stop(self) -> None:
        """End `run()` after its current step and wait for it (queued finals stay queued)."""
        self._stop.set()
        self._wake.set()
        if self._running:
            await self._done.wait()

    async def drain(self) -> None:
        """Publish everything queued now, without waiting for the preview interval; return
        once nothing is pending or `run()` ended. Unbounded while Redis is down: bound it."""
        while self.pending and self._running:
            self._wake.set()
            await self._flushed.wait()

    async def settle(self) -> None:
        """Return once every final queued now (and any queued meanwhile) is acknowledged by
        Redis, or at once while the surface is not OK: Redis down or rebuilding, or `run()` not
        running. Heavy work on the event loop (derivation) awaits this first, so the 1m finals
        handed over reach Redis before it takes the loop (issue 12); it never waits on an
        outage (the SSOT goes on without Redis)."""
        while self._queue.finals and self._running and self._state is SurfaceState.OK:
            self._wake.set()
            await self._flushed.wait()

    async def _loop(self) -> None:
        needs_rebuild = True
        failures = 0
        while not self._stop.is_set():
            try:
                if needs_rebuild:
                    await self.rebuild()
                    needs_rebuild = False
                await self._cycle()
            except SurfaceUnavailable as exc:
                failures += 1
                needs_rebuild = True
                self._degrade(exc)
                await self._pause_ms(self._outages.backoff_ms(failures), self._stop)
                continue
            failures = 0
            await self._pause_ms(self._interval_ms or IDLE_WAKE_MS, self._wake)

    async def _cycle(self) -> None:
        self._wake.clear()  # finals queued from here on wake the next cycle
        async with self._lock:
            if self._leases is not None and self._leases.due(self._clock.now_ms()):
                self._lose(await self._leases.ensure())
            await self._probe()
            self._flushing = True
            try:
                await self._flush()
            finally:
                self._flushing = False
        self._pulse_flushed()

    def _pulse_flushed(self) -> None:
        self._flushed.set()
        self._flushed = asyncio.Event()

    def _degrade(self, exc: SurfaceUnavailable) -> None:
        self._outages.note(exc)
        if self._state is not SurfaceState.DEGRADED:
            log.warning(
                "surface.degraded", extra={"fields": {"error": str(exc), "backlog": self.backlog}}
            )
        self._state = SurfaceState.DEGRADED
        self._pulse_flushed()  # a settle() or drain() waiting on this cycle learns it failed

    async def _pause_ms(self, delay_ms: int, wake: asyncio.Event) -> None:
        """Sleep `delay_ms` of clock time, or less if `wake` is set."""
        if wake.is_set():
            return
        sleeper = asyncio.ensure_future(self._clock.sleep_until(self._clock.now_ms() + delay_ms))
        waker = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    # -- publishing -----------------------------------------------------------------------------

    async def rebuild(self) -> None:
        """Write every series the tail knows (snapshot + its window's events); then OK.

        The queued finals the rebuild covered (same key, same or newer revision in the written
        window) count as published and leave the queue; the rest are published next cycle.
        """
        async with self._lock:
            if self._leases is not None:
                self._lose(await self._leases.ensure())
            with redis_errors("SCRIPT LOAD"):
                # Every primary of a cluster: a restarted node has lost its script cache.
                for script in SCRIPTS:
                    await self._redis.script_load(script)
            self._writes.reset()
            self._streams_written = set()
            self._registered = set()
            await self._register({s for s, _ in self._tail.series()} | set(self._symbols))
            covered: dict[Key, int] = {}
            series = [s for s in self._tail.series() if self._owns(s[0])]
            for start in range(0, len(series), REBUILD_SERIES_PER_CALL):
                await self._rebuild_series(series[start : start + REBUILD_SERIES_PER_CALL], covered)
            self._settle_covered(covered)
            self._next_probe_ms = self._clock.now_ms() + PROBE_INTERVAL_MS
        if self._state is not SurfaceState.OK:
            log.info("surface.ok", extra={"fields": {"series": len(series)}})
        self._state = SurfaceState.OK
        self._outages.recovered()

    async def _rebuild_series(self, chunk: Sequence[Series], covered: dict[Key, int]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            written = False
            for series in chunk:
                bars = self._tail.tail(series[0], series[1], self._snapshot_bars)
                if not bars:
                    continue
                self._writes.finals(pipe, series, bars, bars)
                written = True
                for bar in bars:
                    covered[bar.key] = bar.rev
                self._queue.saw_final(series, bars[-1].open_ms)
            if not written:
                return
            with redis_errors("rebuild"):
                await pipe.execute()
        self._streams_written.update(self._keys.events_for(s) for s, _ in chunk)

    def _settle_covered(self, covered: dict[Key, int]) -> None:
        """Drop the queued finals a rebuild published (their key at the same or a newer rev)."""
        ack_s = time.monotonic()
        for event, enqueued_s in self._queue.take_covered(covered):
            self._published(event, ack_s - enqueued_s)

    async def _register(self, symbols: set[str]) -> None:
        """SADD the symbols not yet in `NS:symbols` (lost ones excepted)."""
        new = sorted(s for s in symbols - self._registered if self._owns(s))
        if not new:
            return
        with redis_errors("SADD symbols"):
            await self._redis.sadd(self._keys.symbols, *new)
        self._registered.update(new)

    async def _probe(self) -> None:
        """Raise SurfaceUnavailable when a stream we wrote is gone (Redis restarted empty)."""
        now_ms = self._clock.now_ms()
        if not self._streams_written or now_ms < self._next_probe_ms:
            return
        self._next_probe_ms = now_ms + PROBE_INTERVAL_MS
        streams = sorted(self._streams_written)
        with redis_errors("EXISTS events"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for stream in streams:
                    pipe.exists(stream)
                found = await pipe.execute()
        for stream, exists in zip(streams, found, strict=True):
            if not exists:
                raise SurfaceUnavailable(f"redis lost the stream {stream} (restarted or flushed)")

    async def _flush(self) -> None:
        batch = list(self._queue.finals)
        previews = self._queue.take_previews()
        ticks = self._queue.take_ticks()
        if not (batch or previews or ticks):
            return
        symbols = {event.symbol for event, _ in batch} | {event.symbol for event in previews}
        try:
            await self._register(symbols | set(ticks))
            async with self._redis.pipeline(transaction=False) as pipe:
                self._queue_finals(pipe, batch)
                self._writes.previews(pipe, previews)
                self._writes.ticks(pipe, ticks)
                with redis_errors("publish"):
                    await pipe.execute()
        except SurfaceUnavailable:
            self._queue.restore(previews, ticks)
            raise
        self._streams_written.update(self._keys.events_for(symbol) for symbol in symbols)
        self.published_previews += len(previews)
        ack_s = time.monotonic()
        for event, enqueued_s in self._queue.pop_published(len(batch)):
            self._published(event, ack_s - enqueued_s)

    def _queue_finals(self, pipe: SurfacePipeline, batch: list[tuple[OhlcvEvent, float]]) -> None:
        """One script call per series, with the snapshot the tail holds now."""
        by_series: dict[Series, list[OhlcvEvent]] = {}
        for event, _ in batch:
            by_series.setdefault((event.symbol, event.tf), []).append(event)
        for series, events in by_series.items():
            bars = self._tail.tail(series[0], series[1], self._snapshot_bars)
            self._writes.finals(pipe, series, events, bars)

    def _owns(self, symbol: str) -> bool:
        return self._leases is None or self._leases.holds(symbol)

    def _lose(self, symbols: list[str]) -> None:
        """Stop publishing `symbols` (another process holds their lease now): drop what is
        queued for them (counted) and say so once in `errors`."""
        if not symbols or self._leases is None:
            return
        lost = set(symbols)
        self.unpublished += self._queue.drop(lost)
        for symbol in sorted(lost):
            holder = self._leases.lost.get(symbol, "?")
            self._outages.errors.append(
                ErrorEntry(
                    ts=self._clock.now_ms(),
                    code="lease.lost",
                    message=(
                        f"{symbol}: its lease is held by another process ({holder}); this "
                        "process no longer publishes it (restart it with other symbols)"
                    )[:500],
                )
            )

    def _published(self, event: OhlcvEvent, latency_s: float) -> None:
        self.published_finals += 1
        if self._on_published is not None:
            self._on_published(event, latency_s)
