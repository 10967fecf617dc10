"""HTTP read path (DESIGN §12: `/api/bars?limit=1000` >= 5,000 req/s with p99 < 10 ms under 16
connections while the connector ingests; gzip when asked).

Subjects, each loaded with `GET /api/bars?symbol=EURUSD&tf=1m&limit=1000` over 16 keep-alive
connections:
- `connector`: the real connector (`fxconnector run`, its own process: the sim broker on three
  symbols at 6,000 ticks/min each, embedded Redis, the demo profile) serving its own HTTP while it
  ingests: ticks validated and built into previews, previews and the minute's finals (and the
  derived ones) written to Redis, all on the event loop that answers the requests. How many ticks
  it applied and finals it stored during each load is read from its /metrics and printed.
- `quiet`: the same app (`create_app`) alone under uvicorn, over an embedded Redis holding a
  1440-bar snapshot and nothing writing (the figure of issue 12 point 3's "quiet").
- both once plain and once with `Accept-Encoding: gzip`.
Baseline: the same uvicorn (uvloop + httptools) serving a constant, pre-encoded body of the same
size from a bare Starlette route (pre-gzipped for the gzip rows): the ceiling of a Python handler
on this machine, measured in the same run.

Load generator: wrk (Debian's `wrk`, installed by `make bench` when root), one thread, in its own
process; where it is missing, the asyncio client below (one keep-alive protocol per connection,
body bytes counted, not kept) in this process instead, and the table says which. Latency is per
request as the client sees it (closed loop: it includes queueing). Subjects and baselines
alternate, `ROUNDS` times; rates and p99 are medians with min-max. On a 2-core machine server,
client, Redis and the connector share the cores (and with anything else running): compare the
ratio to the ceiling, not the absolute rate.
"""

from __future__ import annotations

import asyncio
import gzip
import multiprocessing
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Final, cast

import httpx
import uvloop

from bench.runner import Row, human
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

DURATION_S: Final = 8
REQUESTS: Final = 20_000  # the asyncio client's count per run (no wrk)
WARMUP: Final = 1_000
CONCURRENCY: Final = 16
ROUNDS: Final = 3
SNAPSHOT_BARS: Final = 1440
LIMIT: Final = 1000
PATH: Final = f"/api/bars?symbol=EURUSD&tf=1m&limit={LIMIT}"
T0: Final = 1_767_225_600_000  # 2026-01-01 00:00 UTC
TICKS_PER_MINUTE: Final = 6000
LOOKBACK_MINUTES: Final = 1100  # > LIMIT 1m bars at once
_CONTENT_LENGTH: Final = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
_WRK_RATE: Final = re.compile(r"Requests/sec:\s*([0-9.]+)")
_WRK_P99: Final = re.compile(r"^\s*99%\s+([0-9.]+)(us|ms|s)\s*$", re.M)
_WRK_REQUESTS: Final = re.compile(r"^\s*(\d+) requests in", re.M)
_UNIT_MS: Final = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True, slots=True)
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def run() -> list[Row]:
    wrk = shutil.which("wrk")
    client = "wrk" if wrk else "asyncio client (no wrk on PATH)"
    loads: dict[tuple[str, bool], list[Load]] = {}
    with tempfile.TemporaryDirectory(prefix="fxbench") as tmp:
        embedded = EmbeddedRedis(Path(tmp) / "redis")
        embedded.start()
        try:
            _populate(embedded.url)
            with (
                _connector(Path(tmp) / "connector") as connector,
                _server("api", embedded.url) as quiet,
                _server("constant", embedded.url) as constant,
            ):
                servers = {"connector": connector, "quiet": quiet, "constant": constant}
                for port in servers.values():
                    for packed in (False, True):
                        _check(port, packed)
                for _ in range(ROUNDS):  # alternated, so drifting machine load hits all alike
                    for packed in (False, True):
                        for name, port in servers.items():
                            before = _ingest_counts(port) if name == "connector" else None
                            load = _load(port, packed, wrk)
                            loads.setdefault((name, packed), []).append(load)
                            if before is not None:
                                ticks, finals = (
                                    b - a for a, b in zip(before, _ingest_counts(port), strict=True)
                                )
                                print(
                                    f"bench_http: connector ingested {ticks} ticks and stored "
                                    f"{finals} finals during a {human(load.rate)} req/s load"
                                )
        finally:
            embedded.stop()
    rows = []
    for packed in (False, True):
        encoding = "gzip" if packed else "plain"
        base = loads[("constant", packed)]
        for name in ("connector", "quiet"):
            mine = loads[(name, packed)]
            subject, baseline = _median(mine), _median(base)
            rows.append(
                Row(
                    name=f"GET /api/bars {LIMIT} {encoding}, {name} ({_spread(mine)})",
                    items=subject.requests,
                    unit="req",
                    seconds=subject.seconds,
                    baseline_name=f"bare Starlette const ({_spread(base)})",
                    baseline_seconds=subject.requests / baseline.rate,
                )
            )
    print(f"bench_http: {CONCURRENCY} connections, load generator: {client}")
    return rows


def _spread(loads: list[Load]) -> str:
    rates = sorted(load.rate for load in loads)
    p99 = sorted(load.p99_ms for load in loads)
    return (
        f"{human(rates[0])}-{human(rates[-1])}/s, "
        f"p99 {statistics.median(p99):.1f} [{p99[0]:.1f}-{p99[-1]:.1f}] ms"
    )


def _median(loads: list[Load]) -> Load:
    """The median run by rate, with the median p50/p99 of all runs."""
    by_rate = sorted(loads, key=lambda load: load.rate)[len(loads) // 2]
    return Load(
        requests=by_rate.requests,
        seconds=by_rate.seconds,
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


@contextmanager
def _server(kind: str, redis_url: str) -> Iterator[int]:
    """A `_serve` process; yields its port."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve, args=(kind, redis_url, child), daemon=True)
    process.start()
    try:
        if not parent.poll(30):
            raise RuntimeError(f"the {kind} server did not start")
        yield int(parent.recv())
    finally:
        process.terminate()  # uvicorn shuts down gracefully on SIGTERM
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(10)
        parent.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _connector(workdir: Path) -> Iterator[int]:
    """The real connector (sim broker) in its own process; yields its HTTP port once ready."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "fxconnector.app.main",
        "run",
        "--profile",
        "demo",
        "--workdir",
        str(workdir),
        "--http",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "--set",
        f"broker.sim.ticks_per_minute={TICKS_PER_MINUTE}",
        "--set",
        f"broker.startup_lookback_mins={LOOKBACK_MINUTES}",
        "--set",
        "repair.interval_s=0",
    ]
    log = (workdir.parent / "connector.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 - this interpreter and our own arguments
        command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the connector exited: {_tail(workdir.parent / 'connector.log')}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health/ready", timeout=2).is_success:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the connector was not ready in 300 s")
            time.sleep(0.5)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:]


def _ingest_counts(port: int) -> tuple[int, int]:
    """(ticks applied, finals stored) so far, from the connector's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    totals = {"fxconnector_ticks_total": 0.0, "fxconnector_finals_total": 0.0}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return int(totals["fxconnector_ticks_total"]), int(totals["fxconnector_finals_total"])


def _check(port: int, packed: bool) -> None:
    """One answer fetched and checked before any load."""
    headers = {"accept-encoding": "gzip" if packed else "identity"}
    with httpx.stream("GET", f"http://127.0.0.1:{port}{PATH}", headers=headers, timeout=10) as r:
        raw = b"".join(r.iter_raw())
        encoding = r.headers.get("content-encoding")
        status = r.status_code
    body = gzip.decompress(raw) if packed else raw
    if status != 200 or encoding != ("gzip" if packed else None):
        raise RuntimeError(f"unexpected answer {status} ({encoding}): {body[:200]!r}")
    if len(httpx.Response(200, content=body).json()["bars"]) != LIMIT:
        raise RuntimeError(f"not {LIMIT} bars: {body[:200]!r}")


def _load(port: int, packed: bool, wrk: str | None) -> Load:
    url = f"http://127.0.0.1:{port}{PATH}"
    if wrk is None:
        return uvloop.run(_asyncio_load(port, packed))
    header = ["-H", "Accept-Encoding: gzip"] if packed else []
    subprocess.run(  # noqa: S603 - wrk from PATH and our own arguments (a warm-up)
        [wrk, "-t1", f"-c{CONCURRENCY}", "-d1s", *header, url], check=True, capture_output=True
    )
    out = subprocess.run(  # noqa: S603 - wrk from PATH and our own arguments
        [wrk, "-t1", f"-c{CONCURRENCY}", f"-d{DURATION_S}s", "--latency", *header, url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rate, p99, requests = _WRK_RATE.search(out), _WRK_P99.search(out), _WRK_REQUESTS.search(out)
    if rate is None or p99 is None or requests is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    count = int(requests.group(1))
    return Load(
        requests=count,
        seconds=count / float(rate.group(1)),
        p50_ms=0.0,
        p99_ms=float(p99.group(1)) * _UNIT_MS[p99.group(2)],
    )


async def _asyncio_load(port: int, packed: bool) -> Load:
    await _drive(port, WARMUP, [], packed)
    latencies: list[float] = []
    start = time.perf_counter()
    await _drive(port, REQUESTS, latencies, packed)
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


async def _drive(port: int, requests: int, latencies: list[float], packed: bool) -> None:
    accept = "Accept-Encoding: gzip\r\n" if packed else ""
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}\r\n".encode()
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

        packed = gzip.compress(body, compresslevel=6)
        plain_headers = {"vary": "Accept-Encoding"}
        gzip_headers = {"vary": "Accept-Encoding", "content-encoding": "gzip"}

        async def constant(request: Request) -> Response:
            if "gzip" in request.headers.get("accept-encoding", ""):
                return Response(packed, headers=gzip_headers, media_type="application/json")
            return Response(body, headers=plain_headers, media_type="application/json")

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

    print_table(run())
