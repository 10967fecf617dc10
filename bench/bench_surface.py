"""Redis surface publish throughput, each figure next to raw redis-py on the same events.

Both sides run against one embedded Redis (unix socket) in a temporary folder, and both encode
the events with the canonical codec inside the timed part.

- finals: `RedisSurface.finals()` in batches of one series, published through the Lua script
  (XADD each event + the snapshot's bars and cursor, atomically), until drained; vs pipelined
  XADD of the same events, one round trip per batch, no snapshot.
- finals, same atomic work: the surface vs redis-py calling the same finals script per batch
  (EVALSHA: XADD the batch + the snapshot's bars and cursor, snapshot encoded in full).
- previews: `RedisSurface.previews()` in bursts over many series, coalesced to the latest per
  series (`preview_interval_ms = 0`: every cycle publishes what accumulated during the last
  round trip), until drained; vs pipelined XADD of every preview.
- preview cycle CPU: the client process's CPU time (`time.process_time`) to publish one cycle
  of previews of PREVIEW_SYMBOLS symbols x 7 timeframes (what the connector does every 250 ms),
  through the surface vs the pre-cluster way (one pipelined `XADD ... MAXLEN ~` per preview),
  A/B interleaved, repeated; the figure is ms of CPU per symbol per second at 4 cycles/s.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

import msgspec
import redis.asyncio

from bench.runner import Row, best_of
from fxconnector.config.secrets import Secrets
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.status import SurfaceState
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.clock import SystemClock
from fxconnector.runtime.publish.embedded import EmbeddedRedis
from fxconnector.runtime.publish.keys import STREAM_FIELD, SurfaceKeys
from fxconnector.runtime.publish.redis_connect import connect_redis
from fxconnector.runtime.publish.redis_surface import RedisSurface
from fxconnector.runtime.publish.surface_lua import FINALS_LUA
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
PREVIEW_SYMBOLS: Final = 50
PREVIEW_CYCLES: Final = 100
CPU_REPEATS: Final = 7
TFS: Final = tuple(Timeframe)[:7]


def run() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        finals = _finals()
        previews = _previews()
        batches = [finals[i : i + FINALS_BATCH] for i in range(0, len(finals), FINALS_BATCH)]
        bursts = [previews[i : i + PREVIEW_BURST] for i in range(0, len(previews), PREVIEW_BURST)]
        url = server.url
        surface_finals = best_of(lambda: _session(url, lambda c: _surface_finals(c, batches)), 3)
        raw_finals = best_of(lambda: _session(url, lambda c: _raw_xadd(c, batches)), 3)
        script_finals = best_of(lambda: _session(url, lambda c: _raw_script(c, batches)), 3)
        surface_previews = best_of(lambda: _session(url, lambda c: _surface_previews(c, bursts)), 3)
        raw_previews = best_of(lambda: _session(url, lambda c: _raw_xadd(c, bursts)), 3)
        cpu_surface, cpu_raw = _preview_cpu(url)
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
            f"surface finals, Lua + snapshot, {FINALS_BATCH}/batch",
            len(finals),
            "events",
            surface_finals,
            "redis-py EVALSHA, same script+snapshot",
            script_finals,
        ),
        Row(
            f"preview cycle CPU, {PREVIEW_SYMBOLS} symbols x {len(TFS)} tf",
            PREVIEW_SYMBOLS * PREVIEW_CYCLES,
            "symbol-cycles/CPU",
            cpu_surface,
            "pipelined XADD MAXLEN~ per preview",
            cpu_raw,
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


async def _raw_script(client: redis.asyncio.Redis, batches: list[list[OhlcvEvent]]) -> None:
    """The finals script called directly: the same atomic work, no queue, no encoder cache."""
    sha = await client.script_load(FINALS_LUA)
    windows: dict[tuple[str, Timeframe], list[OhlcvEvent]] = {}
    for batch in batches:
        series = (batch[0].symbol, batch[0].tf)
        window = (windows.get(series, []) + batch)[-SNAPSHOT_BARS:]
        windows[series] = window
        snapshot = b"[" + b",".join(encode(bar) for bar in window) + b"]"
        await client.evalsha(
            sha,
            2,
            KEYS.events_for(series[0]),
            KEYS.snapshot(*series),
            0,
            snapshot,
            *(encode(event) for event in batch),
        )


def _preview_cycles() -> list[list[OhlcvEvent]]:
    return [
        [
            msgspec.structs.replace(_bar(f"SYM{s}", 0, final=False, step=cycle), tf=tf)
            for s in range(PREVIEW_SYMBOLS)
            for tf in TFS
        ]
        for cycle in range(PREVIEW_CYCLES)
    ]


def _preview_cpu(url: str) -> tuple[float, float]:
    """Median CPU seconds of PREVIEW_CYCLES cycles, surface and baseline interleaved; the
    min-max of each is printed."""
    cycles = _preview_cycles()
    surface_cpu: list[float] = []
    raw_cpu: list[float] = []

    async def surface_side(client: redis.asyncio.Redis) -> None:
        surface = _surface(client, preview_interval_ms=0)
        task = asyncio.create_task(surface.run())
        while surface.state is not SurfaceState.OK:  # noqa: ASYNC110 - state, not an event
            await asyncio.sleep(0.001)  # the start's rebuild, untimed
        start = time.process_time()
        for cycle in cycles:
            surface.previews(cycle)
            await surface.drain()
        surface_cpu.append(time.process_time() - start)
        await surface.stop()
        await task
        assert surface.published_previews == len(cycles) * len(cycles[0])

    async def raw_side(client: redis.asyncio.Redis) -> None:
        start = time.process_time()
        for cycle in cycles:
            async with client.pipeline(transaction=False) as pipe:
                for event in cycle:
                    pipe.xadd(
                        KEYS.events,
                        {STREAM_FIELD: encode(event)},
                        maxlen=EVENTS_MAXLEN,
                        approximate=True,
                    )
                await pipe.execute()
        raw_cpu.append(time.process_time() - start)

    for _ in range(CPU_REPEATS):
        _session(url, surface_side)
        _session(url, raw_side)
    per = 4 * 1000 / (PREVIEW_SYMBOLS * PREVIEW_CYCLES)  # ms CPU per symbol per second
    for name, got in (("surface", surface_cpu), ("baseline", raw_cpu)):
        print(
            f"preview CPU {name}: {statistics.median(got) * per:.3f} ms/symbol/s "
            f"(min {min(got) * per:.3f}, max {max(got) * per:.3f}, {CPU_REPEATS} runs)"
        )
    return statistics.median(surface_cpu), statistics.median(raw_cpu)


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
