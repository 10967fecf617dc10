"""Two `fxconnector run` processes with disjoint symbols on a real 3-master Redis Cluster: the
HTTP API and SSE of either serve every symbol of the namespace. Process A lists B's symbols,
serves B's final bars from Redis (equal to B's store), streams B's next final 1m to an SSE
client and answers B's status detail; a range of B's symbol is a clear 409."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Final, cast

import httpx
import msgspec
import pytest
from bench.cluster_launch import RedisClusterNodes
from redis.asyncio import Redis

from fxconnector.client.consumer import SurfaceConsumer
from fxconnector.config.secrets import Secrets
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.publish.redis_connect import connect_cluster
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.app.test_run_cluster import FIRST, KEYS, SECOND, connector, running

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WAIT_S: Final = 30.0
#: B's next final 1m: the minute closes, then the history fetch (delay and calls) publishes it.
FINAL_WITHIN_S: Final = 150.0
FOREIGN: Final = SECOND[0]
M1: Final = Timeframe.M1


def next_final(http: httpx.Client, symbol: str) -> dict[str, Any]:
    """The first final 1m bar of `symbol` an SSE client (subscribed now) receives."""
    deadline = time.monotonic() + FINAL_WITHIN_S
    with http.stream(
        "GET", "/api/stream", params={"symbols": symbol, "tfs": "1m"}, timeout=FINAL_WITHIN_S
    ) as sse:
        assert sse.status_code == 200, sse.read()
        data: list[str] = []
        for line in sse.iter_lines():
            assert time.monotonic() < deadline
            if line.startswith("data: "):
                data.append(line[len("data: ") :])
            elif not line and data:
                event = json.loads("\n".join(data))
                data = []
                if event.get("complete"):
                    assert event["symbol"] == symbol, event
                    assert event["tf"] == "1m", event
                    return dict(event)
    raise AssertionError("the stream ended")


def test_each_process_serves_the_symbols_of_the_whole_namespace(
    tmp_path: Path, redis_cluster: RedisClusterNodes
) -> None:
    a = connector(tmp_path, "a", redis_cluster.url, FIRST)
    b = connector(tmp_path, "b", redis_cluster.url, SECOND)
    with running(a, b), httpx.Client(base_url=a.base, timeout=WAIT_S) as http:
        a.wait_ready()
        b.wait_ready()
        # A lists B's symbols (its own first), found in the namespace's symbol set.
        deadline = time.monotonic() + WAIT_S
        while (listed := http.get("/api/symbols").json()["symbols"]) != [
            *FIRST,
            *sorted(SECOND),
        ]:
            assert time.monotonic() < deadline, listed
            time.sleep(0.5)
        # B's status detail, read by A from the key B writes (on B's first status pass, which
        # may come after its symbols are listed).
        while (detail := http.get("/api/status", params={"symbol": FOREIGN})).status_code != 200:
            assert detail.status_code == 404, detail.text  # status_not_published: not yet
            assert time.monotonic() < deadline, detail.text
            time.sleep(0.5)
        with httpx.Client(base_url=b.base, timeout=WAIT_S) as b_http:
            own = b_http.get("/api/status", params={"symbol": FOREIGN}).json()
        assert detail.json()["symbol"] == FOREIGN
        assert detail.json()["process_id"] == own["process_id"]
        nobody = http.get("/api/status", params={"symbol": "NZDUSD"})
        assert nobody.status_code == 404, nobody.text
        # An SSE client on A subscribed to B's symbol receives B's next final 1m.
        final = next_final(http, FOREIGN)
        assert final["source"] == "history"
        assert final["event_ts"] == final["close_ms"]
        # A range of B's symbol: A has no store of it, a clear 409 (never guessed bars).
        ranged = http.get(
            "/api/bars", params={"symbol": FOREIGN, "tf": "1m", "from_ms": 0, "limit": 10}
        )
        assert ranged.status_code == 409, ranged.text
        assert ranged.json()["error"]["code"] == "foreign_symbol_range"
        assert b.stop() == 0
        # B's final bars, from A, equal B's store (the snapshot's newest finals).
        store = JsonlStore(tmp_path / "b" / "ssot")
        store.open()
        try:
            for tf in (Timeframe.M1, Timeframe.M5):
                stored = [
                    msgspec.to_builtins(bar.event()) for bar in store.bars(FOREIGN, tf, 0, 2**62)
                ]
                body = http.get(
                    "/api/bars", params={"symbol": FOREIGN, "tf": tf.value, "limit": 500}
                ).json()
                finals = [bar for bar in body["bars"] if bar["complete"]]
                assert stored, tf
                assert finals == stored[-500:], tf
                if tf is Timeframe.M1:
                    assert final in stored  # what was pushed is B's stored final
            # The Python client reads B's symbol (and A's) from the cluster alike.
            held = asyncio.run(client_finals(redis_cluster.url, [(FIRST[0], M1), (FOREIGN, M1)]))
            for symbol in (FIRST[0], FOREIGN):
                assert held[symbol], symbol
            stored_m1 = [bar.event() for bar in store.bars(FOREIGN, M1, 0, 2**62)]
            assert held[FOREIGN] == stored_m1[-500:]
        finally:
            store.close()
        assert a.stop() == 0


async def client_finals(
    url: str, series: list[tuple[str, Timeframe]]
) -> dict[str, list[OhlcvEvent]]:
    """The finals a `SurfaceConsumer` on the cluster holds after bootstrap and one poll."""
    client = connect_cluster(url, Secrets())
    try:
        consumer = SurfaceConsumer(cast(Redis, client), KEYS, series)
        await asyncio.wait_for(consumer.bootstrap(), timeout=WAIT_S)
        await asyncio.wait_for(consumer.poll(block_ms=100, count=10_000), timeout=WAIT_S)
        return {symbol: consumer.book.finals(symbol, tf) for symbol, tf in series}
    finally:
        await client.aclose()
