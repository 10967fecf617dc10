"""`RedisSurface.settle` (issue 12): it returns once Redis acknowledged the queued finals, and
never waits on an outage. Against a real redis-server; every wait is bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.status import SurfaceState
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.clock import ManualClock
from tests.redis_server import RedisServer
from tests.runtime.publish.test_redis_surface import (
    KEYS,
    WAIT_S,
    running,
    settled,
    stream_events,
    wait_until,
)
from tests.runtime.store.test_store_suite import make_bar

pytestmark = pytest.mark.redis

#: The clock never moves: the loop cycles only when woken (finals queued, settle, stop).
T0 = 1_549_238_400_000


def test_settle_returns_once_redis_acknowledged_every_queued_final(
    redis_server: RedisServer,
) -> None:
    published: list[OhlcvEvent] = []

    async def scenario() -> None:
        async with running(
            redis_server.url,
            preview_interval_ms=60_000,
            clock=ManualClock(T0),
            on_published=lambda event, _latency: published.append(event),
        ) as (surface, client):
            await settled(surface)
            await asyncio.wait_for(surface.settle(), WAIT_S)  # nothing queued: at once
            finals = [make_bar(i) for i in range(5)]
            surface.finals(finals)
            assert surface.backlog == 5
            await asyncio.wait_for(surface.settle(), WAIT_S)
            # Acknowledged: reported published and in the stream, nothing left queued.
            assert surface.backlog == 0
            assert published == finals
            assert [e for _, e in await stream_events(client)] == finals
            assert await client.exists(KEYS.snapshot("EURUSD", Timeframe.M1))

    asyncio.run(scenario())


def test_settle_never_waits_on_a_redis_outage(redis_server: RedisServer, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(redis_server.url, preview_interval_ms=60_000) as (surface, _client):
            await settled(surface)
            redis_server.kill()
            surface.finals([make_bar(0), make_bar(1)])
            # The cycle fails, the surface degrades and settle returns: the SSOT goes on.
            await asyncio.wait_for(surface.settle(), WAIT_S)
            await wait_until(lambda: surface.state is SurfaceState.DEGRADED)
            assert surface.backlog == 2  # kept for the recovery, never dropped
            await asyncio.wait_for(surface.settle(), WAIT_S)  # degraded: at once
            redis_server.start()
            await settled(surface)
            assert surface.backlog == 0

    asyncio.run(scenario())
