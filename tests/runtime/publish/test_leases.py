"""Symbol leases against a real redis-server: taken at start, refused when another process holds
one (naming symbol and holder), taken back by the same holder, re-taken after an expiry, lost to
another process while running (the surface stops publishing that symbol and says so), released
on a clean stop without touching another holder's."""

from __future__ import annotations

import asyncio
from typing import Final

import pytest
import redis.asyncio

from fxconnector.config.secrets import Secrets
from fxconnector.core.errors import SymbolLeased
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.leases import LEASE_TTL_MS, SymbolLeases
from fxconnector.runtime.publish.redis_connect import connect_redis
from fxconnector.runtime.publish.redis_surface import RedisSurface
from fxconnector.runtime.store.cache_tail import TailCache
from tests.redis_server import RedisServer
from tests.runtime.publish.test_redis_surface import WAIT_S, settled, stream_events
from tests.runtime.store.test_store_suite import make_bar

pytestmark = pytest.mark.redis

KEYS: Final = SurfaceKeys("fxtest")
A: Final = "hostA:/srv/a"
B: Final = "hostB:/srv/b"


def leases(client: redis.asyncio.Redis, holder: str, *symbols: str) -> SymbolLeases:
    return SymbolLeases(client, KEYS, holder, symbols, clock=ManualClock(1_000_000))


def test_a_symbol_held_by_another_process_is_refused_naming_it_and_its_holder(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        async with connect_redis(redis_server.url, Secrets()) as client:
            first = leases(client, A, "EURUSD", "GBPUSD")
            await first.acquire()
            assert await client.get(KEYS.lease("EURUSD")) == A.encode()
            ttl = await client.pttl(KEYS.lease("EURUSD"))
            assert 0 < ttl <= LEASE_TTL_MS
            second = leases(client, B, "USDJPY", "GBPUSD")
            with pytest.raises(SymbolLeased, match=f"symbol GBPUSD .*{A}"):
                await second.acquire()
            # The refused process leaves nothing behind; the holder keeps its leases.
            assert await client.get(KEYS.lease("USDJPY")) is None
            assert await client.get(KEYS.lease("GBPUSD")) == A.encode()
            # The same process restarted (same identity) takes its leases back at once.
            await leases(client, A, "EURUSD", "GBPUSD").acquire()

    asyncio.run(scenario())


def test_an_expired_lease_is_taken_back_and_one_taken_by_another_is_lost(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        async with connect_redis(redis_server.url, Secrets()) as client:
            mine = leases(client, A, "EURUSD", "GBPUSD")
            await mine.acquire()
            # Both expire during an outage (as Redis would expire them); another process
            # starts with GBPUSD meanwhile.
            await client.delete(KEYS.lease("EURUSD"), KEYS.lease("GBPUSD"))
            await leases(client, B, "GBPUSD").acquire()
            assert await mine.ensure() == ["GBPUSD"]
            assert mine.holds("EURUSD")
            assert not mine.holds("GBPUSD")
            assert mine.lost == {"GBPUSD": B}
            assert await client.get(KEYS.lease("EURUSD")) == A.encode()
            # A lost symbol is never taken back, even once free again.
            await client.delete(KEYS.lease("GBPUSD"))
            assert await mine.ensure() == []
            assert await client.get(KEYS.lease("GBPUSD")) is None
            # A clean stop deletes only what is still ours.
            await leases(client, B, "GBPUSD").acquire()
            await mine.release()
            assert await client.get(KEYS.lease("EURUSD")) is None
            assert await client.get(KEYS.lease("GBPUSD")) == B.encode()

    asyncio.run(scenario())


def test_a_lost_symbol_is_no_longer_published_and_status_says_so(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        async with connect_redis(redis_server.url, Secrets()) as client:
            clock = ManualClock(1_000_000)
            mine = SymbolLeases(client, KEYS, A, ("EURUSD", "GBPUSD"), clock=clock)
            await mine.acquire()
            surface = RedisSurface(
                client,
                KEYS,
                TailCache(100),
                events_retention_s=300,
                snapshot_bars=20,
                preview_interval_ms=20,
                clock=clock,
                symbols=("EURUSD", "GBPUSD"),
                leases=mine,
            )
            task = asyncio.create_task(surface.run())
            try:
                await settled(surface)
                surface.finals([make_bar(0, symbol="GBPUSD"), make_bar(0, symbol="EURUSD")])
                await settled(surface)
                await client.delete(KEYS.lease("GBPUSD"))
                await leases(client, B, "GBPUSD").acquire()
                clock.advance(LEASE_TTL_MS)  # renewal due: the next cycle finds it taken
                surface.finals([make_bar(1, symbol="GBPUSD"), make_bar(1, symbol="EURUSD")])
                await settled(surface)
                surface.finals([make_bar(2, symbol="GBPUSD"), make_bar(2, symbol="EURUSD")])
                await settled(surface)
            finally:
                await asyncio.wait_for(surface.stop(), WAIT_S)
                await asyncio.wait_for(task, WAIT_S)
            published = [event.key for _, event in await stream_events(client)]
            gbp = [key for key in published if key[0] == "GBPUSD"]
            eur = [key for key in published if key[0] == "EURUSD"]
            assert gbp == [make_bar(0, symbol="GBPUSD").key]
            assert eur == [make_bar(i, symbol="EURUSD").key for i in range(3)]
            assert surface.unpublished == 2
            [entry] = [e for e in surface.errors if e.code == "lease.lost"]
            assert "GBPUSD" in entry.message
            assert B in entry.message

    asyncio.run(scenario())
