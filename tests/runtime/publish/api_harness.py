"""Test support for the HTTP API and the push stream: a real uvicorn server in a thread, a
minimal surface writer that writes exactly the layout of `keys.py`, and bar fixtures.

The writer here is deliberately small and independent of the real one: the key layout and the
entry format are the contract between the two, and these tests pin the reader's side of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis
import uvicorn
from prometheus_client import CollectorRegistry, Counter
from starlette.types import ASGIApp

from fxconnector.config.secrets import Secrets
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.status import (
    BrokerState,
    BrokerStatus,
    Coverage,
    MarketStatus,
    PreviewStatus,
    ProcessStatus,
    SsotState,
    SsotStatus,
    StatusV2,
    SurfaceState,
    SurfaceStatus,
    SymbolsStatus,
    SymbolState,
    SymbolStatus,
)
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish.host_guard import HostPolicy
from fxconnector.runtime.publish.http_api import create_app
from fxconnector.runtime.publish.http_common import ApiDeps, PushSettings
from fxconnector.runtime.publish.keys import (
    SNAPSHOT_BARS_FIELD,
    SNAPSHOT_CURSOR_FIELD,
    STREAM_FIELD,
    SurfaceKeys,
)
from fxconnector.runtime.publish.redis_connect import connect_redis
from fxconnector.runtime.publish.served_symbols import ServedSymbols
from fxconnector.runtime.publish.surface_reader import SurfaceReader
from tests.redis_server import RedisServer

SYMBOLS = ("EURUSD", "GBPUSD")
TIMEFRAMES = (Timeframe.M1, Timeframe.M5)
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC

# Append one event and move the snapshot in one step, as keys.py requires of the writer.
_PUBLISH = """
local id = redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[3], ARGV[5], id)
end
return id
"""


def bar(
    symbol: str, tf: Timeframe, open_ms: int, *, final: bool = True, rev: int = 0
) -> OhlcvEvent:
    """A valid bar event (final: history/derived, event_ts == close_ms; else a preview)."""
    close_ms = open_ms + tf.ms - 1
    price = 1.1 + (open_ms // tf.ms % 97) / 10_000
    final_source = Source.HISTORY if tf is Timeframe.M1 else Source.DERIVED
    source = final_source if final else Source.STREAM
    return OhlcvEvent(
        symbol=symbol,
        tf=tf,
        open_ms=open_ms,
        close_ms=close_ms,
        open=price,
        high=price + 0.0005,
        low=price - 0.0005,
        close=price + 0.0001,
        volume=10 + rev,
        tick_count=10 + rev,
        complete=final,
        source=source,
        event_ts=close_ms if final else open_ms + 1000,
        rev=rev if final else 0,
    )


def series(symbol: str, tf: Timeframe, count: int, start_ms: int = T0) -> list[OhlcvEvent]:
    return [bar(symbol, tf, start_ms + i * tf.ms) for i in range(count)]


class FakeWriter:
    """Writes the surface exactly as keys.py lays it out (sync client, test thread)."""

    def __init__(self, client: redis.Redis, keys: SurfaceKeys) -> None:
        self.client = client
        self.keys = keys
        self._script = client.register_script(_PUBLISH)
        self.snapshots: dict[tuple[str, Timeframe], list[OhlcvEvent]] = {}

    def publish(self, event: OhlcvEvent, *, keep: int = 5000) -> str:
        """XADD the event; a final also enters its series' snapshot (last `keep` bars)."""
        snapshot_key = self.keys.snapshot(event.symbol, event.tf)
        bars_json = b""
        if event.complete:
            held = self.snapshots.setdefault((event.symbol, event.tf), [])
            held[:] = [b for b in held if b.open_ms != event.open_ms] + [event]
            held.sort(key=lambda b: b.open_ms)
            del held[:-keep]
            bars_json = encode(held)
        args: list[bytes | str] = [
            STREAM_FIELD,
            encode(event),
            bars_json,
            SNAPSHOT_BARS_FIELD,
            SNAPSHOT_CURSOR_FIELD,
        ]
        entry_id = self._script(keys=[self.keys.events_for(event.symbol), snapshot_key], args=args)
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def set_snapshot(self, symbol: str, tf: Timeframe, bars: list[OhlcvEvent], cursor: str) -> None:
        self.snapshots[(symbol, tf)] = list(bars)
        self.client.hset(
            self.keys.snapshot(symbol, tf),
            mapping={SNAPSHOT_BARS_FIELD: encode(bars), SNAPSHOT_CURSOR_FIELD: cursor},
        )

    def stream(self, after: str = "0-0", symbol: str = "") -> list[tuple[str, bytes]]:
        """Every entry after `after` (exclusive), as (id, event JSON), of the events stream
        (cluster layout: of `symbol`'s stream)."""
        entries: Any = self.client.xrange(
            self.keys.events_for(symbol), min=f"({after}" if after != "0-0" else "-"
        )
        return [(entry_id.decode(), fields[STREAM_FIELD.encode()]) for entry_id, fields in entries]


def valid_status(now_ms: int = T0) -> bytes:
    status = StatusV2(
        ts=now_ms,
        version="test",
        process=ProcessStatus(id="test-host:1", pid=1, started_ms=now_ms - 1000),
        market=MarketStatus(
            is_open=True, next_open_utc=None, next_pause_utc=None, calendar_tag="always_open"
        ),
        broker=BrokerStatus(
            kind="sim", state=BrokerState.CONNECTED, last_tick_ts_ms=now_ms, reconnects=0
        ),
        surface=SurfaceStatus(state=SurfaceState.OK, backlog=0),
        ssot=SsotStatus(state=SsotState.OK),
        symbols=SymbolsStatus(
            total=len(SYMBOLS),
            current=len(SYMBOLS),
            lagging=0,
            stalled=0,
            no_final=0,
            with_missing_minutes=0,
            with_underived=0,
            coverage=Coverage(final=10 * len(SYMBOLS), quiet=0, missing=0, closed=0),
            worst=[],
        ),
        preview=PreviewStatus(late_ticks_dropped=0, rejected={}),
        last_command=None,
        errors=[],
        degraded=[],
    )
    return encode(status)


def valid_symbol_status(symbol: str, now_ms: int = T0) -> bytes:
    status = SymbolStatus(
        ts=now_ms,
        symbol=symbol,
        process_id="test-host:1",
        state=SymbolState.CURRENT,
        final_lag_ms=0,
        last_final_ms={tf.value: now_ms - 1 for tf in TIMEFRAMES},
        last_tick_ts_ms=now_ms,
        coverage=Coverage(final=10, quiet=0, missing=0, closed=0),
        underived=0,
    )
    return encode(status)


@dataclass
class FakeConnector:
    """The in-process side the API reads: SSOT history, previews, status, readiness."""

    finals: dict[tuple[str, Timeframe], list[OhlcvEvent]] = field(default_factory=dict)
    previews: dict[tuple[str, Timeframe], OhlcvEvent] = field(default_factory=dict)
    ready_reason: str = ""
    history_calls: int = 0

    async def history(
        self, symbol: str, tf: Timeframe, from_ms: int | None, to_ms: int | None, limit: int
    ) -> list[OhlcvEvent]:
        self.history_calls += 1
        bars = [
            b
            for b in self.finals.get((symbol, tf), [])
            if (from_ms is None or b.open_ms >= from_ms) and (to_ms is None or b.open_ms < to_ms)
        ]
        # like the SSOT wiring: the first `limit` from from_ms, else the newest `limit`
        return bars[:limit] if from_ms is not None else bars[-limit:]

    def preview(self, symbol: str, tf: Timeframe) -> OhlcvEvent | None:
        return self.previews.get((symbol, tf))

    def ready(self) -> tuple[bool, str]:
        return (not self.ready_reason, self.ready_reason)


def make_deps(
    reader: SurfaceReader,
    connector: FakeConnector,
    *,
    push: PushSettings | None = None,
    recheck_s: float = 0.1,
    ui_dir: Path | None = None,
) -> ApiDeps:
    registry = CollectorRegistry()
    Counter("fxconnector_test_requests", "A metric to find in /metrics", registry=registry).inc()
    return ApiDeps(
        reader=reader,
        symbols=SYMBOLS,
        timeframes=TIMEFRAMES,
        history=connector.history,
        preview=connector.preview,
        status=valid_status,
        status_symbol=valid_symbol_status,
        ready=connector.ready,
        metrics_registry=registry,
        ui_dir=ui_dir,
        push=push or PushSettings(heartbeat_s=0.5, block_ms=200, backoff_max_s=0.5),
        bars_recheck_s=recheck_s,
    )


class LiveServer:
    """A real uvicorn server on a free loopback port, run in a thread with its own event loop."""

    def __init__(self, app: ASGIApp, cleanup: Callable[[], Awaitable[None]] | None = None) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
            ws="websockets-sansio",
        )
        self._server = uvicorn.Server(config)
        self._cleanup = cleanup
        self._thread = threading.Thread(target=self._run, name="uvicorn", daemon=True)
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        async def main() -> None:
            try:
                await self._server.serve(sockets=[self._sock])
            finally:
                if self._cleanup is not None:
                    await self._cleanup()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start: {self.error!r}")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()
        if self._thread.is_alive():
            raise RuntimeError("uvicorn did not stop")
        if self.error is not None:
            raise self.error


@dataclass
class Stack:
    """A running API over a real Redis: the server, the writer, the fake connector."""

    server: LiveServer
    writer: FakeWriter
    connector: FakeConnector
    redis_server: RedisServer
    keys: SurfaceKeys
    deps: ApiDeps

    @property
    def url(self) -> str:
        return self.server.url


@contextlib.contextmanager
def running_stack(
    redis_server: RedisServer,
    *,
    push: PushSettings | None = None,
    recheck_s: float = 0.1,
    ui_dir: Path | None = None,
    keys: SurfaceKeys | None = None,
    guard: HostPolicy | None = None,
    shared_now_ms: Callable[[], int] | None = None,
) -> Iterator[Stack]:
    """The whole stack, running; stopped on exit. With `shared_now_ms` (its clock) the API
    serves the namespace's symbols too (`ServedSymbols`, as with an external Redis)."""
    keys = keys or SurfaceKeys("fxtest")
    client = connect_redis(redis_server.url, Secrets(), max_connections=16)  # as lifecycle's
    connector = FakeConnector()
    deps = make_deps(
        SurfaceReader(client, keys), connector, push=push, recheck_s=recheck_s, ui_dir=ui_dir
    )
    if guard is not None:
        deps = replace(deps, guard=guard)
    if shared_now_ms is not None:
        served = ServedSymbols(deps.symbols, reader=deps.reader, now_ms=shared_now_ms, calendars={})
        deps = replace(deps, served=served, calendars=served.calendars)
    app = create_app(deps)
    server = LiveServer(app, cleanup=client.aclose)
    sync_client = redis_server.client()
    try:
        server.start()
        yield Stack(server, FakeWriter(sync_client, keys), connector, redis_server, keys, deps)
    finally:
        server.stop()
        sync_client.close()
