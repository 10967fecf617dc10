"""The exec process's price reader over a real Redis, in both key layouts."""

from __future__ import annotations

import asyncio

import pytest

from fxconnector.config.secrets import Secrets
from fxconnector.core.errors import SurfaceUnavailable
from fxconnector.core.model.tick import Tick
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.execution.prices import PriceReader
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.redis_connect import connect_redis
from tests.redis_server import RedisServer

T0 = 1_767_225_600_000


def latest(
    server: RedisServer, keys: SurfaceKeys, symbols: list[str]
) -> tuple[dict[str, Tick], int]:
    async def go() -> tuple[dict[str, Tick], int]:
        client = connect_redis(server.url, Secrets())
        try:
            reader = PriceReader(client, keys)
            found = await reader.latest(symbols)
            return found, reader.rejected
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_single_node_layout_reads_price_tik_and_skips_bad_values(redis_server: RedisServer) -> None:
    keys = SurfaceKeys("fxp")
    good = Tick("EURUSD", 1.1, 1.1002, T0)
    redis_server.client().hset(
        keys.price_tik,
        mapping={
            "EURUSD": encode(good),
            "GBPUSD": b'{"symbol":"GBPUSD","bid":-1,"ask":1.3,"ts_ms":1}',  # breaks tick_v1
            "USDJPY": encode(Tick("EURJPY", 160.0, 160.02, T0)),  # filed under another symbol
        },
    )
    found, rejected = latest(redis_server, keys, ["EURUSD", "GBPUSD", "USDJPY", "AUDUSD"])
    assert found == {"EURUSD": good}
    assert rejected == 2


def test_cluster_layout_reads_each_symbols_tick_key(redis_server: RedisServer) -> None:
    keys = SurfaceKeys("fxp", cluster=True)
    client = redis_server.client()
    for symbol, bid in (("EURUSD", 1.1), ("GBPUSD", 1.3)):
        client.set(keys.tick(symbol), encode(Tick(symbol, bid, bid + 0.0002, T0)))
    found, rejected = latest(redis_server, keys, ["EURUSD", "GBPUSD", "USDJPY"])
    assert sorted(found) == ["EURUSD", "GBPUSD"]
    assert found["GBPUSD"].bid == 1.3
    assert rejected == 0


def test_redis_down_is_surface_unavailable(redis_server: RedisServer) -> None:
    redis_server.kill()
    with pytest.raises(SurfaceUnavailable, match="reading prices"):
        latest(redis_server, SurfaceKeys("fxp"), ["EURUSD"])
