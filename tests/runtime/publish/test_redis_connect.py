"""Bounded Redis pools: a caller that finds every connection busy fails like a refused
connection (the HTTP API's 503), after a short wait, instead of redis-py's MaxConnectionsError."""

from __future__ import annotations

import asyncio

import pytest

from fxconnector.config.secrets import Secrets
from fxconnector.core.errors import SurfaceUnavailable
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.redis_connect import connect_redis
from fxconnector.runtime.publish.surface_reader import SurfaceReader
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis


def test_a_busy_bounded_pool_is_surface_unavailable_then_serves_again(
    redis_server: RedisServer,
) -> None:
    async def main() -> tuple[str, tuple[str | None, str | None]]:
        client = connect_redis(redis_server.url, Secrets(), max_connections=1, pool_timeout_s=0.2)
        reader = SurfaceReader(client, SurfaceKeys("fxtest"))
        try:
            # The only connection waits in a blocking read of an empty stream.
            blocked = asyncio.create_task(reader.read_events("0-0", block_ms=1500, count=1))
            await asyncio.sleep(0.2)
            with pytest.raises(SurfaceUnavailable) as busy:
                await reader.snapshot_cursor("EURUSD", Timeframe.M1)
            assert await blocked == []  # the blocked read ends normally
            return str(busy.value), await reader.snapshot_cursor("EURUSD", Timeframe.M1)
        finally:
            await client.aclose()

    message, cursor = asyncio.run(main())
    assert message.startswith("redis EVAL snapshot at head failed: ConnectionError")
    assert cursor == (None, None)  # answered once the connection is free
