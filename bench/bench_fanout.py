"""Many push clients on one process (issue 12 point 6): 1,000 SSE + 200 WebSocket clients.

Subject: the real app (`create_app`: the one fan-out reader, bounded per-client queues, the
request pool) under uvicorn (uvloop, httptools) in its own process, over the embedded Redis, with
the three Redis clients the connector gives it (the fan-out's own, a bounded request pool).
Writer (this process): `SYMBOLS` symbols, each simulated minute lasting `MINUTE_S` seconds of wall
time: previews of 1m and 5m every 250 ms per symbol, and at each minute's end the 1m finals of
every symbol (5m every fifth minute), written as keys.py lays them out (XADD + snapshot in one
script), each entry's publish time noted. Clients (a third process, uvloop): `SSE` raw-socket
SSE clients and `WS` WebSocket clients (`websockets`), selections mixed (every symbol; one
symbol; 1m only), plus an `/api/bars` poller (`BARS_RPS` requests/s) during the whole run.

Figures: the latency of every 1m final at every client (receive time - publish time, so "after
the minute" with the minute closed at publish), p50/p99/max; duplicates (an id received twice
by one client), gaps (an id published and selected but not received), slow-client cut-offs,
and `/api/bars` answers by status. Absolute figures, not a ratio: the previous per-client
reader is gone from the code (it failed at 110 clients on the default pool, see issue 12).
Run: `.venv/bin/python -m bench.bench_fanout` (`--sse N --ws N --minutes N` to vary; `--cluster`
for the cluster key layout, one stream per symbol, on the same single Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import redis
import uvloop

from bench.push_clients import Record, open_sse, run_ws
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

SYMBOLS: Final = ("EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCHF", "USDCAD", "NZDUSD", "EURGBP")
MINUTE_S: Final = 2.0
PREVIEW_S: Final = 0.25
BARS_RPS: Final = 20
T0: Final = 1_767_225_600_000
_PUBLISH = """
local id = redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[3], ARGV[5], id)
end
return id
"""


@dataclass(frozen=True, slots=True)
class Selection:
    symbols: tuple[str, ...]
    tfs: tuple[str, ...]

    def query(self) -> dict[str, str]:
        return {"symbols": ",".join(self.symbols), "tfs": ",".join(self.tfs)}


def selection(i: int) -> Selection:
    kind = i % 5
    if kind < 2:
        return Selection(SYMBOLS, ("1m", "5m"))
    if kind < 4:
        return Selection((SYMBOLS[i % len(SYMBOLS)],), ("1m", "5m"))
    return Selection(SYMBOLS, ("1m",))


def bar(symbol: str, tf: Timeframe, open_ms: int, *, final: bool) -> OhlcvEvent:
    price = 1.1 + (open_ms // tf.ms % 97) / 10_000
    close_ms = open_ms + tf.ms - 1
    return OhlcvEvent(
        symbol=symbol,
        tf=tf,
        open_ms=open_ms,
        close_ms=close_ms,
        open=price,
        high=price + 0.0005,
        low=price - 0.0005,
        close=price + 0.0001,
        volume=10,
        tick_count=10,
        complete=final,
        source=(Source.HISTORY if tf is Timeframe.M1 else Source.DERIVED)
        if final
        else Source.STREAM,
        event_ts=close_ms if final else open_ms + 1000,
        rev=0,
    )


# --- the server process -----------------------------------------------------------------------


async def _no_history(
    symbol: str, tf: Timeframe, from_ms: int | None, to_ms: int | None, limit: int
) -> list[OhlcvEvent]:
    return []


def _serve(redis_url: str, cluster: bool, conn: Connection) -> None:
    import uvicorn
    from prometheus_client import CollectorRegistry

    from fxconnector.runtime.publish.http_api import ApiDeps, create_app
    from fxconnector.runtime.publish.http_common import PushSettings
    from fxconnector.runtime.publish.redis_connect import connect_redis
    from fxconnector.runtime.publish.surface_reader import SurfaceReader

    keys = SurfaceKeys(cluster=cluster)
    deps = ApiDeps(
        reader=SurfaceReader(connect_redis(redis_url, Secrets(), max_connections=16), keys),
        push_reader=SurfaceReader(connect_redis(redis_url, Secrets(), max_connections=2), keys),
        symbols=SYMBOLS,
        timeframes=(Timeframe.M1, Timeframe.M5),
        history=_no_history,
        preview=lambda symbol, tf: None,
        status=lambda: b"{}",
        status_symbol=lambda symbol: b"{}",
        ready=lambda: (True, ""),
        metrics_registry=CollectorRegistry(),
        push=PushSettings(),
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    conn.send(sock.getsockname()[1])
    conn.close()
    config = uvicorn.Config(
        create_app(deps),
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=4096,
    )
    uvicorn.Server(config).run(sockets=[sock])


# --- the client process -----------------------------------------------------------------------


@dataclass
class ClientReport:
    received: list[dict[str, float]]  # per client: id -> first receive time
    duplicates: int
    errors: Counter[str]
    bars_status: Counter[int]


def _clients(port: int, sse: int, ws: int, cluster: bool, conn: Connection) -> None:
    uvloop.run(_clients_main(port, sse, ws, cluster, conn))


def entry_keys(
    ids: list[str], chosen: Selection, cluster: bool, tf_of: dict[str, str]
) -> list[str]:
    """`stream symbol/id` of each received id ("/id" in the single layout). A composite
    cursor (cluster layout, several symbols) names the entry by the position that moved to an
    entry the client selected (every stream starts empty: the clients connect before anything
    is written; a position may also jump over entries the client did not select)."""
    if not cluster:
        return ["/" + entry_id for entry_id in ids]
    if len(chosen.symbols) == 1:
        return [f"{chosen.symbols[0]}/{entry_id}" for entry_id in ids]
    out = []
    previous = dict.fromkeys(chosen.symbols, "0-0")
    for entry_id in ids:
        current = dict(part.split(":") for part in entry_id.split(","))
        (moved,) = [
            s
            for s in current
            if current[s] != previous[s] and tf_of.get(f"{s}/{current[s]}") in chosen.tfs
        ]
        out.append(f"{moved}/{current[moved]}")
        previous = current
    return out


async def _clients_main(port: int, sse: int, ws: int, cluster: bool, conn: Connection) -> None:
    records: list[Record] = []
    transports = []
    for i in range(sse):
        transport, client = await open_sse(port, selection(i).query(), keep_data=False)
        transports.append(transport)
        records.append(client.record)
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    tasks = []
    for i in range(ws):
        record = Record(keep_data=False)
        records.append(record)
        tasks.append(asyncio.create_task(run_ws(port, selection(i).query(), record)))
    async with asyncio.timeout(120):
        while not all(r.status in (200, 101) for r in records):  # noqa: ASYNC110 - many
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # every client has joined the fan-out (a heartbeat period)
    bars_status: Counter[int] = Counter()
    stop = asyncio.Event()
    poller = asyncio.create_task(_poll_bars(port, bars_status, stop))
    conn.send("ready")
    # The writer is done: it sends every entry's timeframe (to read composite cursors).
    tf_of: dict[str, str] = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    await asyncio.sleep(3.0)  # the last events arrive
    stop.set()
    await poller
    for transport in transports:
        transport.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    received, duplicates, errors = [], 0, Counter[str]()
    chosen = [selection(i) for i in range(sse)] + [selection(i) for i in range(ws)]
    for record, picked in zip(records, chosen, strict=True):
        first: dict[str, float] = {}
        keyed = entry_keys(record.ids, picked, cluster, tf_of)
        for entry_id, at in zip(keyed, record.times, strict=True):
            if entry_id in first:
                duplicates += 1
            else:
                first[entry_id] = at
        received.append(first)
        errors.update(e["error"]["code"] for e in record.errors)
    conn.send(ClientReport(received, duplicates, errors, bars_status))


async def _poll_bars(port: int, statuses: Counter[int], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    i = 0
    while not stop.is_set():
        symbol = SYMBOLS[i % len(SYMBOLS)]
        i += 1
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"GET /api/bars?symbol={symbol}&tf=1m HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            head = await reader.readline()
            statuses[int(head.split()[1])] += 1
            writer.close()
        except OSError:
            statuses[0] += 1
        await asyncio.sleep(1 / BARS_RPS)
    del loop


# --- the writer (this process) ----------------------------------------------------------------


@dataclass
class Published:
    ids: list[tuple[str, str, str, bool]]  # (id, symbol, tf, final)
    at: dict[str, float]


def _write(url: str, minutes: int, cluster: bool) -> Published:
    keys = SurfaceKeys(cluster=cluster)
    client = redis.Redis.from_url(url)
    script = client.register_script(_PUBLISH)
    published = Published([], {})
    snapshots: dict[tuple[str, Timeframe], list[OhlcvEvent]] = {}

    def publish(event: OhlcvEvent) -> None:
        bars_json = b""
        if event.complete:
            held = snapshots.setdefault((event.symbol, event.tf), [])
            held.append(event)
            del held[:-500]
            bars_json = encode(held)
        entry_id = script(
            keys=[keys.events_for(event.symbol), keys.snapshot(event.symbol, event.tf)],
            args=[
                STREAM_FIELD,
                encode(event),
                bars_json,
                SNAPSHOT_BARS_FIELD,
                SNAPSHOT_CURSOR_FIELD,
            ],
        ).decode()
        key = f"{event.symbol if cluster else ''}/{entry_id}"
        published.at[key] = time.time()
        published.ids.append((key, event.symbol, event.tf.value, event.complete))

    try:
        start = time.monotonic()
        for minute in range(minutes):
            open_ms = T0 + minute * 60_000
            boundary = start + (minute + 1) * MINUTE_S
            while time.monotonic() + PREVIEW_S < boundary:
                for symbol in SYMBOLS:
                    publish(bar(symbol, Timeframe.M1, open_ms, final=False))
                    five = open_ms - open_ms % Timeframe.M5.ms
                    publish(bar(symbol, Timeframe.M5, five, final=False))
                time.sleep(PREVIEW_S)
            time.sleep(max(0.0, boundary - time.monotonic()))
            for symbol in SYMBOLS:  # the minute closed: its finals
                publish(bar(symbol, Timeframe.M1, open_ms, final=True))
            if minute % 5 == 4:
                five = open_ms - open_ms % Timeframe.M5.ms
                for symbol in SYMBOLS:
                    publish(bar(symbol, Timeframe.M5, five, final=True))
    finally:
        client.close()
    return published


def run(sse: int, ws: int, minutes: int, cluster: bool = False) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="fxbench") as tmp:
        embedded = EmbeddedRedis(Path(tmp) / "redis")
        embedded.start()
        server_end, server_child = context.Pipe()
        server = context.Process(
            target=_serve, args=(embedded.url, cluster, server_child), daemon=True
        )
        server.start()
        clients = None
        try:
            if not server_end.poll(60):
                raise RuntimeError("the server did not start")
            port = int(server_end.recv())
            time.sleep(1.0)
            client_end, client_child = context.Pipe()
            clients = context.Process(
                target=_clients, args=(port, sse, ws, cluster, client_child), daemon=True
            )
            clients.start()
            if not client_end.poll(180) or client_end.recv() != "ready":
                raise RuntimeError("the clients did not connect")
            published = _write(embedded.url, minutes, cluster)
            client_end.send({key: tf for key, _, tf, _ in published.ids})
            if not client_end.poll(120):
                raise RuntimeError("no client report")
            report: ClientReport = client_end.recv()
        finally:
            for process in (clients, server):
                if process is not None:
                    process.terminate()
                    process.join(10)
                    if process.is_alive():
                        process.kill()
            embedded.stop()
    figures = _figures(sse, ws, minutes, published, report)
    figures["layout"] = "cluster (per-symbol streams)" if cluster else "single stream"
    return figures


def _figures(
    sse: int, ws: int, minutes: int, published: Published, report: ClientReport
) -> dict[str, Any]:
    latencies: list[float] = []
    gaps = 0
    selections = [selection(i) for i in range(sse)] + [selection(i) for i in range(ws)]
    for chosen, got in zip(selections, report.received, strict=True):
        for entry_id, symbol, tf, final in published.ids:
            if symbol not in chosen.symbols or tf not in chosen.tfs:
                continue
            at = got.get(entry_id)
            if at is None:
                gaps += 1
            elif final and tf == "1m":
                latencies.append(at - published.at[entry_id])
    latencies.sort()
    return {
        "clients": f"{sse} SSE + {ws} WS",
        "minutes": minutes,
        "events_published": len(published.ids),
        "final_1m_deliveries": len(latencies),
        "final_1m_latency_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "final_1m_latency_p99_s": (
            round(latencies[int(len(latencies) * 0.99)], 3) if latencies else None
        ),
        "final_1m_latency_max_s": round(latencies[-1], 3) if latencies else None,
        "duplicates": report.duplicates,
        "gaps": gaps,
        "client_errors": dict(report.errors),
        "api_bars_status": dict(report.bars_status),
        "api_bars_5xx": sum(n for status, n in report.bars_status.items() if status >= 500),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sse", type=int, default=1000)
    parser.add_argument("--ws", type=int, default=200)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--cluster", action="store_true", help="the cluster key layout")
    args = parser.parse_args()
    figures = run(args.sse, args.ws, args.minutes, args.cluster)
    for name, value in figures.items():
        print(f"{name}: {value}")
    ok = (
        figures["duplicates"] == 0
        and figures["gaps"] == 0
        and figures["api_bars_5xx"] == 0
        and (figures["final_1m_latency_p99_s"] or 99) < 3.0
    )
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
