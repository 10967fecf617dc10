"""`/api/smc` and the push stream's `kinds=smc` over a real Redis and the real server.

The hints are the engine's over a real FXCM series, written by the SMC consumer's own script
(`runtime.smc.writes`), so what is served is exactly what the live consumer publishes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import websockets

from fxconnector.config.secrets import Secrets
from fxconnector.core.model.smc import SmcHint
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.clock import SystemClock
from fxconnector.runtime.publish.http_api import create_app
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.redis_connect import connect_redis
from fxconnector.runtime.publish.surface_reader import SurfaceReader
from fxconnector.runtime.smc.state import SmcState
from fxconnector.runtime.smc.window import HintWindow
from fxconnector.runtime.smc.writes import SMC_LUA, SmcWrites
from fxconnector.smc import SmcConfig, SmcEngine, encode_hint
from tests.fxcm_data import fxcm_finals
from tests.redis_server import RedisServer
from tests.runtime.publish.api_harness import (
    T0,
    FakeConnector,
    FakeWriter,
    LiveServer,
    bar,
    make_deps,
)

pytestmark = pytest.mark.redis

KEYS = SurfaceKeys("fxtest")
M1 = Timeframe.M1
SYMBOL = "GBPUSD"
WAIT_S = 20.0


@pytest.fixture(scope="module")
def hints(shared_data: Path) -> list[SmcHint]:
    bars = fxcm_finals(shared_data / "fxcm" / "fxcm-gbpusd-m1-bid-2012.csv.zip", SYMBOL)[:600]
    engine = SmcEngine(SYMBOL, M1, SmcConfig())
    return [hint for b in bars for hint in engine.update(b)]


class SmcWriter:
    """Publishes hints exactly as the live consumer does (its script, its window)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.window = HintWindow(10_000)
        self.seq = 0
        client.script_load(SMC_LUA)
        self._writes = SmcWrites(KEYS, retention_ms=86_400_000, clock=SystemClock())

    def publish(self, hints: list[SmcHint]) -> str:
        encoded = self.window.add(hints)
        self.seq += 1
        state = SmcState(0, hints[-1].confirm_ts if hints else 0, 1, self.seq)
        pipe = self.client.pipeline(transaction=False)
        self._writes.series(pipe, SYMBOL, M1, encoded, self.window.encoded(), state)  # type: ignore[arg-type]
        (cursor,) = pipe.execute()
        return cursor.decode() if isinstance(cursor, bytes) else str(cursor)


@pytest.fixture
def server(redis_server: RedisServer) -> Iterator[tuple[str, SmcWriter, FakeWriter]]:
    client = connect_redis(redis_server.url, Secrets(), max_connections=16)
    deps = replace(make_deps(SurfaceReader(client, KEYS), FakeConnector()), smc_timeframes=(M1,))
    live = LiveServer(create_app(deps), cleanup=client.aclose)
    sync = redis_server.client()
    live.start()
    try:
        yield live.url, SmcWriter(sync), FakeWriter(sync, KEYS)
    finally:
        live.stop()
        sync.close()


def test_api_smc_serves_the_snapshot_validated_and_by_range(
    server: tuple[str, SmcWriter, FakeWriter], hints: list[SmcHint]
) -> None:
    url, writer, _ = server
    cursor = writer.publish(hints)
    with httpx.Client(base_url=url, timeout=WAIT_S) as http:
        body = http.get("/api/smc", params={"symbol": SYMBOL, "tf": "1m"}).json()
        assert body["cursor"] == cursor
        assert [json.dumps(h, separators=(",", ":")).encode() for h in body["hints"]] == [
            encode_hint(h) for h in hints
        ]
        middle = hints[len(hints) // 2].confirm_ts
        ranged = http.get(
            "/api/smc", params={"symbol": SYMBOL, "tf": "1m", "from_ms": middle, "to_ms": middle}
        ).json()["hints"]
        assert ranged
        assert all(h["confirm_ts"] == middle for h in ranged)
        assert len(ranged) == sum(h.confirm_ts == middle for h in hints)
        empty = http.get("/api/smc", params={"symbol": "EURUSD", "tf": "1m"}).json()
        # No snapshot: none of the series' hints is in the stream, its head is the cursor.
        assert empty == {"cursor": cursor, "hints": [], "symbol": "EURUSD", "tf": "1m"}
        # A hint Redis holds that breaks the contract is never served.
        key = KEYS.smc_snapshot(SYMBOL, M1)
        bad = encode(hints[0])[:-1] + b',"extra":1}'
        writer.client.hset(key, "hints", b"[" + bad + b"," + encode(hints[1]) + b"]")
        served = http.get("/api/smc", params={"symbol": SYMBOL, "tf": "1m"}).json()["hints"]
        assert served == [json.loads(encode(hints[1]))]
        for query, status, code in [
            ({"symbol": SYMBOL}, 422, "missing_parameter"),
            ({"symbol": "XAUXAG", "tf": "1m"}, 404, "unknown_symbol"),
            ({"symbol": SYMBOL, "tf": "5m"}, 404, "unknown_timeframe"),
            ({"symbol": SYMBOL, "tf": "1m", "from_ms": "2", "to_ms": "1"}, 400, "invalid_range"),
            ({"symbol": SYMBOL, "tf": "1m", "from_ms": "x"}, 422, "invalid_parameter"),
            ({"symbol": SYMBOL, "tf": "1m", "limit": "3"}, 400, "unknown_parameter"),
        ]:
            answer = http.get("/api/smc", params=query)
            assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), query
        doc = http.get("/openapi.json").json()
        assert "/api/smc" in doc["paths"]
        assert "SmcHint" in doc["components"]["schemas"]


async def read_sse(
    url: str, query: dict[str, str], want: int, headers: dict[str, str] | None = None
) -> list[tuple[str, str, Any]]:
    """(event, id, data) of the first `want` events of an SSE stream (bounded wait)."""
    async with asyncio.timeout(WAIT_S):
        return await _read_sse(url, query, want, headers)


async def _read_sse(
    url: str, query: dict[str, str], want: int, headers: dict[str, str] | None
) -> list[tuple[str, str, Any]]:
    got: list[tuple[str, str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=url, timeout=WAIT_S) as http,
        http.stream("GET", "/api/stream", params=query, headers=headers or {}) as response,
    ):
        assert response.status_code == 200
        event, entry_id, data = "message", "", ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("id: "):
                entry_id = line[4:]
            elif line.startswith("data: "):
                data += line[6:]
            elif line == "" and data:
                got.append((event, entry_id, json.loads(data)))
                event, entry_id, data = "message", "", ""
                if len(got) >= want:
                    return got
    return got


def test_push_kinds_smc_and_both_from_their_cursors(
    server: tuple[str, SmcWriter, FakeWriter], hints: list[SmcHint]
) -> None:
    url, writer, bars = server
    first, later = hints[:20], hints[20:30]
    smc_cursor = writer.publish(first)
    bar_cursor = bars.publish(bar(SYMBOL, M1, T0))
    writer.publish(later)
    bars.publish(bar(SYMBOL, M1, T0 + M1.ms))

    async def main() -> None:
        only = await read_sse(url, {"kinds": "smc", "symbols": SYMBOL, "cursor": smc_cursor}, 10)
        assert {e for e, _, _ in only} == {"smc"}
        assert [d for _, _, d in only] == [json.loads(encode_hint(h)) for h in later]
        both = await read_sse(
            url,
            {
                "kinds": "bars,smc",
                "symbols": SYMBOL,
                "tfs": "1m",
                "cursor": f"{bar_cursor}|{smc_cursor}",
            },
            11,
        )
        assert sorted(e for e, _, _ in both) == ["bar"] + ["smc"] * 10
        assert all("|" in i for _, i, _ in both)
        # Resuming from the id of the 5th event gives exactly the rest.
        fifth = both[4][1]
        rest = await read_sse(
            url, {"kinds": "bars,smc", "symbols": SYMBOL, "tfs": "1m"}, 6, {"Last-Event-ID": fifth}
        )
        for kind in ("bar", "smc"):  # each kind in its stream order; kinds interleave freely
            assert [d for e, _, d in rest if e == kind] == [d for e, _, d in both[5:] if e == kind]
        port = url.rsplit(":", 1)[1]
        ws_url = f"ws://127.0.0.1:{port}/ws?kinds=smc&symbols={SYMBOL}&cursor={smc_cursor}"
        async with websockets.connect(ws_url) as ws:
            frames = [json.loads(await asyncio.wait_for(ws.recv(), WAIT_S)) for _ in range(10)]
        assert [f["smc"] for f in frames] == [json.loads(encode_hint(h)) for h in later]
        async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as http:
            bad = await http.get("/api/stream", params={"kinds": "ticks"})
            assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_parameter")
            bad = await http.get("/api/stream", params={"kinds": "bars,smc", "cursor": "1-0"})
            assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_parameter")

    asyncio.run(main())
