"""The live SMC consumer against a real redis-server fed by the real surface writer.

The bars are a real FXCM series (../shared/data). The reference is the engine run over the same
bars in one go (what `fxconnector smc --store` prints); the consumer's stream must equal it byte
for byte, uninterrupted or stopped and restarted mid-series.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from bench.cluster_launch import RedisClusterNodes

from fxconnector.client.backoff import Backoff
from fxconnector.config.secrets import Secrets
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.smc import SmcHint
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils.json_codec import decode
from fxconnector.runtime.clock import SystemClock
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.redis_connect import connect_cluster, connect_redis
from fxconnector.runtime.smc.live import SmcLive
from fxconnector.runtime.smc.state import SmcState, decode_state
from fxconnector.runtime.smc.writes import SMC_LUA, SmcWrites
from fxconnector.runtime.store.cache_tail import TailCache
from fxconnector.smc import SmcConfig, SmcEngine, encode_hint
from tests.fxcm_data import fxcm_finals
from tests.redis_server import RedisServer
from tests.runtime.publish.test_redis_surface import running_surface, settled

pytestmark = pytest.mark.redis

KEYS = SurfaceKeys("smctest")
M1 = Timeframe.M1
SYMBOL = "GBPUSD"
BARS = 1_500
WAIT_S = 60.0
FAST = Backoff(initial_s=0.02, cap_s=0.2)


@pytest.fixture(scope="module")
def series(shared_data: Path) -> list[OhlcvEvent]:
    return fxcm_finals(shared_data / "fxcm" / "fxcm-gbpusd-m1-bid-2012.csv.zip", SYMBOL)[:BARS]


def reference(bars: Sequence[OhlcvEvent]) -> list[bytes]:
    """The uninterrupted run: the engine over every bar, in order."""
    engine = SmcEngine(SYMBOL, M1, SmcConfig())
    return [encode_hint(hint) for bar in bars for hint in engine.update(bar)]


async def stream_hints(client: redis.asyncio.Redis) -> list[bytes]:
    entries: Any = await client.xrange(KEYS.smc_events)
    return [fields[b"event"] for _, fields in entries]


def make_live(
    client: redis.asyncio.Redis,
    *,
    source: Callable[[str, Timeframe, int, int], object] | None = None,
    book_bars: int = 200,
) -> SmcLive:
    return SmcLive(
        client,
        KEYS,
        [(SYMBOL, M1)],
        SmcConfig(),
        clock=SystemClock(),
        retention_ms=86_400_000,
        snapshot_hints=50,
        book_bars=book_bars,
        source=source,  # type: ignore[arg-type]
        backoff=FAST,
        block_ms=50,
    )


@contextlib.asynccontextmanager
async def consuming(live: SmcLive) -> AsyncIterator[SmcLive]:
    stop = asyncio.Event()
    task = asyncio.create_task(live.run(stop))
    try:
        yield live
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)


async def fed_through(live: SmcLive, open_ms: int) -> None:
    async def poll() -> None:
        while True:
            state = live.state(SYMBOL, M1)
            if state is not None and state.last_open_ms >= open_ms and live.idle():
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), WAIT_S)


async def publish(url: str, bars: Sequence[OhlcvEvent], tail: TailCache) -> None:
    """The real surface writer publishes `bars` as finals, in batches like the fast path."""
    client = connect_redis(url, Secrets())
    async with running_surface(
        client,
        KEYS,
        tail,
        events_retention_s=86_400,
        snapshot_bars=200,
        preview_interval_ms=20,
        clock=SystemClock(),
    ) as surface:
        for start in range(0, len(bars), 100):
            surface.finals(bars[start : start + 100])
            await settled(surface)


def test_live_stream_equals_the_uninterrupted_run(
    redis_server: RedisServer, series: list[OhlcvEvent]
) -> None:
    asyncio.run(_live_stream_equals_the_uninterrupted_run(redis_server, series))


async def _live_stream_equals_the_uninterrupted_run(
    redis_server: RedisServer, series: list[OhlcvEvent]
) -> None:
    expected = reference(series)
    assert len(expected) > 100  # a real series confirms many hints
    client = connect_redis(redis_server.url, Secrets())
    try:
        async with consuming(make_live(client)) as live:
            await publish(redis_server.url, series, TailCache(500))
            await fed_through(live, series[-1].open_ms)
        assert await stream_hints(client) == expected
        state = live.state(SYMBOL, M1)
        assert state is not None
        assert (state.origin_ms, state.bars) == (series[0].open_ms, len(series))
        # The snapshot: its cursor is the stream's head, its hints valid and a bounded window.
        snap = await client.hgetall(KEYS.smc_snapshot(SYMBOL, M1))
        newest: Any = await client.xrevrange(KEYS.smc_events, count=1)
        head = newest[0][0]
        assert snap[b"cursor"] == head
        kept = decode(snap[b"hints"], list[SmcHint])
        assert 0 < len(kept) <= 50
        assert {encode_hint(h) for h in kept} <= set(expected)
    finally:
        await client.aclose()


def test_restart_mid_series_emits_exactly_the_uninterrupted_run(
    redis_server: RedisServer, series: list[OhlcvEvent]
) -> None:
    asyncio.run(_restart_mid_series_emits_exactly_the_uninterrupted_run(redis_server, series))


async def _restart_mid_series_emits_exactly_the_uninterrupted_run(
    redis_server: RedisServer, series: list[OhlcvEvent]
) -> None:
    """Stopped after bar 700, the surface moves on (its 200-bar snapshot no longer reaches the
    origin), then a new consumer re-warms from the SSOT and goes on: no hint twice, none lost."""
    expected = reference(series)
    half = 700
    tail = TailCache(500)
    asked: list[tuple[int, int]] = []

    async def store(symbol: str, tf: Timeframe, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
        asked.append((from_ms, to_ms))
        return [bar for bar in series if from_ms <= bar.open_ms <= to_ms]

    client = connect_redis(redis_server.url, Secrets())
    try:
        async with consuming(make_live(client)) as first:
            await publish(redis_server.url, series[:half], tail)
            await fed_through(first, series[half - 1].open_ms)
        published_first = await stream_hints(client)
        assert published_first == reference(series[:half])
        await publish(redis_server.url, series[half:], tail)
        async with consuming(make_live(client, source=store)) as second:
            await fed_through(second, series[-1].open_ms)
        assert await stream_hints(client) == expected
        assert second.stats.rewarm_short == 0
        assert asked
        assert asked[0][0] == series[0].open_ms
        state = second.state(SYMBOL, M1)
        assert state is not None
        assert state.bars == len(series)
    finally:
        await client.aclose()


def test_restart_without_source_reports_a_short_rewarm(
    redis_server: RedisServer, series: list[OhlcvEvent]
) -> None:
    asyncio.run(_restart_without_source_reports_a_short_rewarm(redis_server, series))


async def _restart_without_source_reports_a_short_rewarm(
    redis_server: RedisServer, series: list[OhlcvEvent]
) -> None:
    """With no SSOT to re-warm from and the origin gone from the surface, the consumer says so."""
    tail = TailCache(500)
    client = connect_redis(redis_server.url, Secrets())
    try:
        async with consuming(make_live(client)) as first:
            await publish(redis_server.url, series[:400], tail)
            await fed_through(first, series[399].open_ms)
        await publish(redis_server.url, series[400:600], tail)
        async with consuming(make_live(client)) as second:
            await fed_through(second, series[599].open_ms)
        assert second.stats.rewarm_short == 1
        hints = await stream_hints(client)
        assert len({(h) for h in hints}) == len(hints)  # still never the same hint twice
    finally:
        await client.aclose()


def test_cluster_layout_publishes_per_symbol_keys_in_one_slot(
    redis_cluster: RedisClusterNodes, series: list[OhlcvEvent]
) -> None:
    """On Redis Cluster every SMC key of a symbol carries its hash tag: the atomic write is a
    single-slot script and the stream equals the uninterrupted run there too."""
    asyncio.run(_cluster(redis_cluster, series[:600]))


async def _cluster(nodes: RedisClusterNodes, bars: list[OhlcvEvent]) -> None:
    keys = SurfaceKeys("smctest", cluster=True)
    assert keys.smc_events_for(SYMBOL) == "smctest:smc:events:{GBPUSD}"
    assert keys.smc_snapshot(SYMBOL, M1) == "smctest:smc:snap:{GBPUSD}:1m"
    client = connect_cluster(nodes.url, Secrets())
    writer = connect_cluster(nodes.url, Secrets())
    live = SmcLive(
        client,
        keys,
        [(SYMBOL, M1)],
        SmcConfig(),
        clock=SystemClock(),
        retention_ms=86_400_000,
        snapshot_hints=50,
        book_bars=200,
        backoff=FAST,
        block_ms=50,
    )
    try:
        async with (
            consuming(live),
            running_surface(
                writer,
                keys,
                TailCache(500),
                events_retention_s=86_400,
                snapshot_bars=200,
                preview_interval_ms=20,
                clock=SystemClock(),
            ) as surface,
        ):
            for start in range(0, len(bars), 100):
                surface.finals(bars[start : start + 100])
                await settled(surface)
            await fed_through(live, bars[-1].open_ms)
        entries: Any = await client.xrange(keys.smc_events_for(SYMBOL))
        assert [fields[b"event"] for _, fields in entries] == reference(bars)
        snap: Any = await client.hgetall(keys.smc_snapshot(SYMBOL, M1))
        assert snap[b"cursor"] == entries[-1][0]
    finally:
        await client.aclose()


def test_a_retried_write_is_applied_once(
    redis_server: RedisServer, series: list[OhlcvEvent]
) -> None:
    """A write whose reply was lost is sent again with the same number: the script applies it
    once (no hint twice in the stream), and the next write goes through."""
    hints = reference(series[:300])
    assert len(hints) >= 6
    client = redis_server.client()
    try:
        client.script_load(SMC_LUA)
        writes = SmcWrites(KEYS, retention_ms=86_400_000, clock=SystemClock())
        first, second = hints[:3], hints[3:6]

        def write(batch: list[bytes], seq: int) -> None:
            pipe = client.pipeline(transaction=False)
            state = SmcState(series[0].open_ms, series[seq].open_ms, seq + 1, seq)
            writes.series(pipe, SYMBOL, M1, batch, b"[" + b",".join(batch) + b"]", state)  # type: ignore[arg-type]
            pipe.execute()

        write(first, 1)
        write(first, 1)  # the retry of a write that was applied
        write(second, 2)
        write(second, 2)
        stored: Any = client.xrange(KEYS.smc_events)
        assert [fields[b"event"] for _, fields in stored] == first + second
        snap: Any = client.hgetall(KEYS.smc_snapshot(SYMBOL, M1))
        assert decode_state(snap[b"state"]).seq == 2
    finally:
        client.close()
