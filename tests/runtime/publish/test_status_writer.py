"""Status in Redis: each process its own keys; `NS:status` only while a process is alone."""

from __future__ import annotations

import asyncio

import pytest

from fxconnector.config.secrets import Secrets
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.redis_connect import connect_redis
from fxconnector.runtime.publish.status_writer import (
    StatusPayloads,
    process_id,
    this_process_id,
    write_status,
)
from fxconnector.runtime.publish.surface_reader import SurfaceReader
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

T0 = 1_767_225_600_000
TTL_S = 5


def payloads(process: str, symbols: tuple[str, ...], n: int) -> StatusPayloads:
    return StatusPayloads(
        process_id=process,
        summary=f'{{"process":"{process}","n":{n}}}'.encode(),
        symbols={s: f'{{"symbol":"{s}","process":"{process}"}}'.encode() for s in symbols},
    )


def test_two_processes_of_one_namespace_do_not_overwrite_each_other(
    redis_server: RedisServer,
) -> None:
    keys = SurfaceKeys("shared")
    a = payloads("host-a:10", ("EURUSD", "GBPUSD"), 1)
    b = payloads("host-b:10", ("USDJPY",), 1)

    async def scenario() -> None:
        client = connect_redis(redis_server.url, Secrets())
        reader = SurfaceReader(client, keys)
        try:
            # Alone: the single-process key is the process's summary, as it always was.
            assert await write_status(client, keys, a, ttl_s=TTL_S, now_ms=T0) is True
            assert await client.get(keys.status) == a.summary
            assert await reader.status_processes() == {"host-a:10": a.summary}
            # A second process: each keeps its own summary and details; NS:status goes.
            assert await write_status(client, keys, b, ttl_s=TTL_S, now_ms=T0 + 500) is False
            assert await client.get(keys.status) is None
            a2 = payloads("host-a:10", ("EURUSD", "GBPUSD"), 2)
            assert await write_status(client, keys, a2, ttl_s=TTL_S, now_ms=T0 + 1000) is False
            assert await client.get(keys.status) is None
            assert await client.get(keys.status_process("host-a:10")) == a2.summary
            assert await client.get(keys.status_process("host-b:10")) == b.summary
            for each in (a2, b):
                for symbol, detail in each.symbols.items():
                    assert await reader.status_symbol(symbol) == detail
                    assert 0 < await client.ttl(keys.status_symbol(symbol)) <= TTL_S
            assert await reader.status_processes() == {
                "host-a:10": a2.summary,
                "host-b:10": b.summary,
            }
            # B stops writing: one expiry later it is gone and A is alone again.
            later = T0 + 1000 + TTL_S * 1000 + 1
            assert await write_status(client, keys, a, ttl_s=TTL_S, now_ms=later) is True
            assert await client.get(keys.status) == a.summary
            assert await reader.status_processes() == {"host-a:10": a.summary}
            assert await client.ttl(keys.status_processes) > 0
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_a_process_id_is_host_and_pid_fit_for_a_key() -> None:
    assert process_id("trader-box.local", 4321) == "trader-box.local:4321"
    assert process_id("odd host/name{x}", 7) == "odd_host_name_x_:7"
    assert process_id("", 1) == "host:1"
    assert len(process_id("h" * 500, 99999)) <= 200
    mine = this_process_id(123)
    assert mine.endswith(":123")
    assert mine == this_process_id(123)  # stable
