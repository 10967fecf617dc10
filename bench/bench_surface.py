"""Redis surface publish throughput, each figure next to raw redis-py on the same events.

Both sides run against one embedded Redis (unix socket) in a temporary folder, and both encode
the events with the canonical codec inside the timed part.

- finals: `RedisSurface.finals()` in batches of one series, published through the Lua script
  (XADD each event + the snapshot's bars and cursor, atomically), until drained; vs pipelined
  XADD of the same events, one round trip per batch, no snapshot.
- previews: `RedisSurface.previews()` in bursts over many series, coalesced to the latest per
  series (`preview_interval_ms = 0`: every cycle publishes what accumulated during the last
  round trip), until drained; vs pipelined XADD of every preview.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

import redis.asyncio

from bench.runner import Row, best_of
from fxconnector.config.secrets import Secrets
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.clock import SystemClock
from fxconnector.runtime.publish.embedded import EmbeddedRedis
from fxconnector.runtime.publish.keys import STREAM_FIELD, SurfaceKeys
from fxconnector.runtime.publish.redis_connect import connect_redis
from fxconnector.runtime.publish.redis_surface import RedisSurface
from fxconnector.runtime.store.cache_tail import TailCache

#: 2019-02-04T00:00:00Z.
START_MS: Final = 1_549_238_400_000
SERIES: Final = 10
FINALS_PER_SERIES: Final = 5_000
FINALS_BATCH: Final = 500
SNAPSHOT_BARS: Final = 500  # the config default
PREVIEW_SERIES: Final = 20
PREVIEWS: Final = 50_000
PREVIEW_BURST: Final = 100
EVENTS_RETENTION_S: Final = 300  # the config default
#: The baseline's trim (the count the surface trimmed to before trimming by time).
EVENTS_MAXLEN: Final = 100_000
KEYS: Final = SurfaceKeys("bench")


def run() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        finals = _finals()
        previews = _previews()
        batches = [finals[i : i + FINALS_BATCH] for i in range(0, len(finals), FINALS_BATCH)]
        bursts = [previews[i : i + PREVIEW_BURST] for i in range(0, len(previews), PREVIEW_BURST)]
        url = server.url
        surface_finals = best_of(lambda: _session(url, lambda c: _surface_finals(c, batches)), 3)
        raw_finals = best_of(lambda: _session(url, lambda c: _raw_xadd(c, batches)), 3)
        surface_previews = best_of(lambda: _session(url, lambda c: _surface_previews(c, bursts)), 3)
        raw_previews = best_of(lambda: _session(url, lambda c: _raw_xadd(c, bursts)), 3)
    return [
        Row(
            f"surface finals, Lua + snapshot, {FINALS_BATCH}/batch",
            len(finals),
            "events",
            surface_finals,
            "redis-py pipelined XADD",
            raw_finals,
        ),
        Row(
            f"surface previews, coalesced, {PREVIEW_SERIES} series",
            len(previews),
            "events",
            surface_previews,
            "redis-py pipelined XADD",
            raw_previews,
        ),
    ]


def _session(url: str, body: Callable[[redis.asyncio.Redis], Awaitable[None]]) -> None:
    """One timed run on an emptied server, with a fresh client."""

    async def main() -> None:
        client = connect_redis(url, Secrets())
        try:
            await client.flushall()
            await body(client)
        finally:
            await client.aclose()

    asyncio.run(main())


def _surface(client: redis.asyncio.Redis, preview_interval_ms: int) -> RedisSurface:
    return RedisSurface(
        client,
        KEYS,
        TailCache(SNAPSHOT_BARS),
        events_retention_s=EVENTS_RETENTION_S,
        snapshot_bars=SNAPSHOT_BARS,
        preview_interval_ms=preview_interval_ms,
        clock=SystemClock(),
    )


async def _surface_finals(client: redis.asyncio.Redis, batches: list[list[OhlcvEvent]]) -> None:
    surface = _surface(client, preview_interval_ms=250)
    task = asyncio.create_task(surface.run())
    for batch in batches:
        surface.finals(batch)
        await asyncio.sleep(0)  # the pipeline hands finals over between other work
    await surface.drain()
    await surface.stop()
    await task
    assert surface.published_finals == sum(len(batch) for batch in batches)


async def _surface_previews(client: redis.asyncio.Redis, bursts: list[list[OhlcvEvent]]) -> None:
    surface = _surface(client, preview_interval_ms=0)
    task = asyncio.create_task(surface.run())
    for burst in bursts:
        surface.previews(burst)
        await asyncio.sleep(0)
    await surface.drain()
    await surface.stop()
    await task
    assert surface.published_previews >= PREVIEW_SERIES


async def _raw_xadd(client: redis.asyncio.Redis, batches: Sequence[list[OhlcvEvent]]) -> None:
    for batch in batches:
        async with client.pipeline(transaction=False) as pipe:
            for event in batch:
                pipe.xadd(
                    KEYS.events,
                    {STREAM_FIELD: encode(event)},
                    maxlen=EVENTS_MAXLEN,
                    approximate=True,
                )
            await pipe.execute()


def _bar(symbol: str, i: int, *, final: bool, step: int = 0) -> OhlcvEvent:
    open_ms = START_MS + i * Timeframe.M1.ms
    price = round(1.1 + (i % 97) * 1e-4 + step * 1e-6, 6)
    return OhlcvEvent(
        symbol=symbol,
        tf=Timeframe.M1,
        open_ms=open_ms,
        close_ms=open_ms + Timeframe.M1.ms - 1,
        open=price,
        high=round(price + 2e-4, 6),
        low=round(price - 1e-4, 6),
        close=price,
        volume=100 + step,
        tick_count=100 + step,
        complete=final,
        source=Source.HISTORY if final else Source.STREAM,
        event_ts=open_ms + Timeframe.M1.ms - 1 if final else open_ms + step % 60_000,
        rev=0,
    )


def _finals() -> list[OhlcvEvent]:
    """Batches of one series at a time, the series taking turns (as a backfill would)."""
    out: list[OhlcvEvent] = []
    for start in range(0, FINALS_PER_SERIES, FINALS_BATCH):
        for s in range(SERIES):
            out.extend(_bar(f"SYM{s}", i, final=True) for i in range(start, start + FINALS_BATCH))
    return out


def _previews() -> list[OhlcvEvent]:
    """Previews of the open minute of every series, each update a little later than the last."""
    return [
        _bar(f"SYM{n % PREVIEW_SERIES}", 0, final=False, step=n // PREVIEW_SERIES)
        for n in range(PREVIEWS)
    ]
