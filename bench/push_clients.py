"""Lean push clients for many-client tests and the fan-out bench: SSE over a raw asyncio
protocol (HTTP/1.1 chunked body parsed by hand, no per-event objects beyond what is recorded)
and WebSocket over the `websockets` asyncio client.

Each client records what it got: bar events as `(id, data, receive time)`, error events as
their JSON, and whether/why the server ended the stream. Times are `time.time()` (wall clock),
so a writer in another process can be compared with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlencode

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


@dataclass
class Record:
    """What one client received."""

    ids: list[str] = field(default_factory=list)
    datas: list[bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    status: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    close_reason: str = ""
    keep_data: bool = True

    def add(self, entry_id: str, data: bytes) -> None:
        self.ids.append(entry_id)
        self.times.append(time.time())
        if self.keep_data:
            self.datas.append(data)


class SseClient(asyncio.Protocol):
    """One SSE connection: GET `path`, then parse the chunked event stream into `record`."""

    def __init__(self, request: bytes, record: Record) -> None:
        self._request = request
        self.record = record
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._events = bytearray()
        self._in_body = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._in_body:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.record.status = int(self._buf[9:12])
            del self._buf[: end + 4]
            self._in_body = True
        buf = self._buf
        while True:
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                break
            size = int(buf[:line_end], 16)
            if len(buf) < line_end + 2 + size + 2:
                break
            self._events += buf[line_end + 2 : line_end + 2 + size]
            del buf[: line_end + 2 + size + 2]
            if size == 0:
                self.record.ended.set()
                break
        self._parse_events()

    def _parse_events(self) -> None:
        events = self._events
        while True:
            end = events.find(b"\n\n")
            if end < 0:
                return
            block = bytes(events[:end])
            del events[: end + 2]
            kind, entry_id, data = "message", None, []
            for line in block.split(b"\n"):
                if line.startswith(b":"):
                    continue
                name, _, value = line.partition(b":")
                value = value.removeprefix(b" ")
                if name == b"event":
                    kind = value.decode()
                elif name == b"id":
                    entry_id = value.decode()
                elif name == b"data":
                    data.append(value)
            if kind == "bar" and entry_id is not None:
                self.record.add(entry_id, b"\n".join(data))
            elif kind == "error":
                self.record.errors.append(json.loads(b"\n".join(data)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.record.ended.set()


def sse_request(port: int, query: dict[str, str], last_event_id: str | None = None) -> bytes:
    head = f"GET /api/stream?{urlencode(query)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if last_event_id is not None:
        head += f"Last-Event-ID: {last_event_id}\r\n"
    return (head + "\r\n").encode()


async def open_sse(
    port: int,
    query: dict[str, str],
    *,
    last_event_id: str | None = None,
    keep_data: bool = True,
    rcvbuf: int | None = None,
) -> tuple[asyncio.Transport, SseClient]:
    """A connected SSE client (its record fills as events come)."""
    loop = asyncio.get_running_loop()
    record = Record(keep_data=keep_data)
    request = sse_request(port, query, last_event_id)
    sock = None
    if rcvbuf is not None:
        import socket

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        transport, client = await loop.create_connection(
            lambda: SseClient(request, record), sock=sock
        )
    else:
        transport, client = await loop.create_connection(
            lambda: SseClient(request, record), "127.0.0.1", port
        )
    return transport, client


async def run_ws(
    port: int, query: dict[str, str], record: Record, *, origin: str | None = None
) -> None:
    """A WebSocket client filling `record` until the server closes or it is cancelled."""
    url = f"ws://127.0.0.1:{port}/ws?{urlencode(query)}"
    headers = {"Origin": origin} if origin is not None else None
    try:
        async with connect(url, additional_headers=headers, max_queue=None) as ws:
            record.status = 101
            async for message in ws:
                text = message if isinstance(message, str) else message.decode()
                if text.startswith('{"error"'):
                    record.errors.append(json.loads(text))
                    continue
                # {"id":"<id>","event":<the event's bytes as stored>}
                entry_id = text[7 : text.index('"', 7)]
                start = 7 + len(entry_id) + len('","event":')
                record.add(entry_id, text[start:-1].encode() if record.keep_data else b"")
            record.close_code = ws.close_code
            record.close_reason = ws.close_reason or ""
    except ConnectionClosed as closed:
        if closed.rcvd is not None:
            record.close_code = closed.rcvd.code
            record.close_reason = closed.rcvd.reason
    finally:
        with contextlib.suppress(Exception):
            record.ended.set()
