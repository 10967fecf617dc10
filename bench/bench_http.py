"""HTTP read path (DESIGN §12: `/api/bars?limit=1000` >= 5,000 req/s with p99 < 10 ms).

Subject: the real app (`create_app`) under uvicorn with uvloop + httptools, in its own process,
over the embedded Redis holding a 1440-bar EURUSD 1m snapshot written as keys.py lays it out;
every request goes through parameter parsing and the cursor-keyed window cache.
Baseline: the same uvicorn serving a constant, pre-encoded body of the same 1000 bars from a bare
Starlette route (the ceiling for any Python handler on this machine).

Each server runs `ROUNDS` times, alternating; the medians are reported. Both are driven from
this process: one answer is fetched and checked with httpx, then
`REQUESTS` requests (after a warm-up) go out `CONCURRENCY` at a time over keep-alive
connections from a minimal asyncio-protocol client that counts body bytes without keeping them.
Not httpx for the load: on ~240 KB bodies its async client tops out near 100-400 req/s here,
far below the server, so it would time itself. Latency is per request as the client sees it
(closed loop, so it includes queueing: mean latency ~ CONCURRENCY / rate). Server and client
each get one process; on a 2-core machine they share the cores with Redis (and anything else
running: compare the ratio, not the absolute rate).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Final, cast

import httpx
import uvloop

from bench.runner import Row
from fxconnector.config.secrets import Secrets
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish.embedded import EmbeddedRedis
from fxconnector.runtime.publish.keys import (
    SNAPSHOT_BARS_FIELD,
    SNAPSHOT_CURSOR_FIELD,
    STREAM_FIELD,
    SurfaceKeys,
)

REQUESTS: Final = 20_000
WARMUP: Final = 1_000
CONCURRENCY: Final = 32
ROUNDS: Final = 3
SNAPSHOT_BARS: Final = 1440
LIMIT: Final = 1000
PATH: Final = f"/api/bars?symbol=EURUSD&tf=1m&limit={LIMIT}"
T0: Final = 1_767_225_600_000  # 2026-01-01 00:00 UTC
_CONTENT_LENGTH: Final = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


@dataclass(frozen=True, slots=True)
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float


def run() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="fxbench") as tmp:
        embedded = EmbeddedRedis(Path(tmp) / "redis")
        embedded.start()
        try:
            _populate(embedded.url)
            subjects, baselines = [], []
            for _ in range(ROUNDS):  # alternated, so drifting machine load hits both alike
                subjects.append(_measure("api", embedded.url))
                baselines.append(_measure("constant", embedded.url))
            subject, baseline = _median(subjects), _median(baselines)
        finally:
            embedded.stop()
    return [
        Row(
            name=f"GET /api/bars limit={LIMIT} (p99 {subject.p99_ms:.1f} ms)",
            items=subject.requests,
            unit="req",
            seconds=subject.seconds,
            baseline_name=f"bare Starlette const (p99 {baseline.p99_ms:.1f} ms)",
            baseline_seconds=baseline.seconds,
        )
    ]


def _median(loads: list[Load]) -> Load:
    """The median run by time, with the median p50/p99 of all runs."""
    by_time = sorted(loads, key=lambda load: load.seconds)[len(loads) // 2]
    return Load(
        requests=by_time.requests,
        seconds=by_time.seconds,
        p50_ms=statistics.median(load.p50_ms for load in loads),
        p99_ms=statistics.median(load.p99_ms for load in loads),
    )


def _bars() -> list[OhlcvEvent]:
    out = []
    for i in range(SNAPSHOT_BARS):
        open_ms = T0 + i * 60_000
        price = 1.1 + (i % 97) / 10_000
        out.append(
            OhlcvEvent(
                symbol="EURUSD",
                tf=Timeframe.M1,
                open_ms=open_ms,
                close_ms=open_ms + 59_999,
                open=price,
                high=price + 0.0005,
                low=price - 0.0005,
                close=price + 0.0001,
                volume=100 + i % 50,
                tick_count=100 + i % 50,
                complete=True,
                source=Source.HISTORY,
                event_ts=open_ms + 59_999,
                rev=0,
            )
        )
    return out


def _populate(url: str) -> None:
    import redis

    keys = SurfaceKeys()
    bars = _bars()
    client = redis.Redis.from_url(url)
    try:
        cursor = client.xadd(keys.events, {STREAM_FIELD: encode(bars[-1])})
        client.hset(
            keys.snapshot("EURUSD", Timeframe.M1),
            mapping={SNAPSHOT_BARS_FIELD: encode(bars), SNAPSHOT_CURSOR_FIELD: cursor},
        )
    finally:
        client.close()


def _measure(kind: str, redis_url: str) -> Load:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve, args=(kind, redis_url, child), daemon=True)
    process.start()
    try:
        if not parent.poll(30):
            raise RuntimeError(f"the {kind} server did not start")
        port = int(parent.recv())
        return uvloop.run(_load(f"http://127.0.0.1:{port}"))
    finally:
        process.terminate()  # uvicorn shuts down gracefully on SIGTERM
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(10)
        parent.close()


async def _load(base_url: str) -> Load:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        first = await client.get(PATH)  # one checked answer before the load
    if first.status_code != 200 or len(first.json()["bars"]) != LIMIT:
        raise RuntimeError(f"unexpected answer {first.status_code}: {first.text[:200]}")
    port = int(base_url.rsplit(":", 1)[1])
    await _drive(port, WARMUP, [])
    latencies: list[float] = []
    start = time.perf_counter()
    await _drive(port, REQUESTS, latencies)
    seconds = time.perf_counter() - start
    latencies.sort()
    return Load(
        requests=REQUESTS,
        seconds=seconds,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1000,
    )


class _KeepAlive(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: a request at a time, body bytes counted, not kept."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._head = bytearray()
        self._body_left = -1
        self._done: asyncio.Future[int] | None = None
        self._status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def request(self, data: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self._done = asyncio.get_running_loop().create_future()
        self._head.clear()
        self._body_left = -1
        self.transport.write(data)
        return self._done

    def data_received(self, data: bytes) -> None:
        if self._body_left < 0:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            match = _CONTENT_LENGTH.search(self._head, 0, end)
            if match is None:
                raise RuntimeError("response without content-length")
            self._status = int(self._head[9:12])
            self._body_left = int(match.group(1)) - (len(self._head) - end - 4)
        else:
            self._body_left -= len(data)
        if self._body_left == 0 and self._done is not None:
            self._done.set_result(self._status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc or ConnectionError("connection closed"))


async def _drive(port: int, requests: int, latencies: list[float]) -> None:
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    remaining = requests
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        nonlocal remaining
        transport, connection = await loop.create_connection(_KeepAlive, "127.0.0.1", port)
        try:
            while remaining > 0:
                remaining -= 1
                sent = time.perf_counter()
                status = await asyncio.wait_for(connection.request(request), 10)
                latencies.append(time.perf_counter() - sent)
                if status != 200:
                    raise RuntimeError(f"GET {PATH} -> {status}")
        finally:
            transport.close()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def _no_history(
    symbol: str, tf: Timeframe, from_ms: int | None, to_ms: int | None, limit: int
) -> list[OhlcvEvent]:
    return []


def _serve(kind: str, redis_url: str, conn: Connection) -> None:
    """The server process: bind a free loopback port, report it, serve until SIGTERM."""
    import uvicorn
    from prometheus_client import CollectorRegistry
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
    from starlette.types import ASGIApp

    from fxconnector.runtime.publish.http_api import ApiDeps, create_app
    from fxconnector.runtime.publish.redis_connect import connect_redis
    from fxconnector.runtime.publish.surface_reader import SurfaceReader

    app: ASGIApp
    if kind == "api":
        deps = ApiDeps(
            reader=SurfaceReader(connect_redis(redis_url, Secrets()), SurfaceKeys()),
            symbols=("EURUSD",),
            timeframes=(Timeframe.M1,),
            history=_no_history,
            preview=lambda symbol, tf: None,
            status=lambda: b"{}",
            status_symbol=lambda symbol: b"{}",
            ready=lambda: (True, ""),
            metrics_registry=CollectorRegistry(),
        )
        app = create_app(deps)
    else:
        body = (
            b'{"symbol":"EURUSD","tf":"1m","bars":'
            + encode(_bars()[-LIMIT:])
            + b',"preview":null,"cursor":"0-1"}'
        )

        async def constant(_: Request) -> Response:
            return Response(body, media_type="application/json")

        app = Starlette(routes=[Route("/api/bars", constant)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    conn.send(sock.getsockname()[1])
    conn.close()
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    from bench.runner import print_table

    rows = run()
    print_table(rows)
    for row in rows:
        print(f"{row.name}: {row.rate:,.0f} req/s; baseline {REQUESTS / row.baseline_seconds:,.0f}")
