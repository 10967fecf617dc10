"""The push stream (DESIGN §8): SSE at `/api/stream` and a WebSocket at `/ws`.

Rules:
- Both are fed only from the Redis events stream, read with bounded blocking XREADs from an
  exclusive cursor: the `Last-Event-ID` header when present (SSE reconnects), else the `cursor`
  query parameter (e.g. the one `/api/bars` gave), else the newest entry at connect time.
  Reading from a cursor gives every later entry exactly once, in stream order.
- Events go out as the bytes the writer stored (canonical `ohlcv_event_v1`), never re-encoded:
  SSE `id: <stream id>` / `event: bar` / `data: <json>`; WebSocket text frames
  `{"id": <stream id>, "event": {...}}`. `symbols` and `tfs` filter by the event's own fields.
- Redis trouble never ends a stream: the client gets `{"error": {"code": "unavailable", ...}}`
  (SSE `event: error`, no id, so Last-Event-ID is untouched) and the loop retries from the same
  cursor with capped exponential backoff and jitter. A cursor older than the oldest entry kept
  by the trimmed stream gets a `cursor_expired` error (reload /api/bars), then streaming goes on.
- A stream ends when the client disconnects: a watcher task cancels the loop at once, even in
  the middle of a blocking read. The loops write nothing and keep no state beyond the cursor.
- A stream also ends at once when the server shuts down (`ApiDeps.streams.close()`), before
  Redis goes: SSE ends its response cleanly (a last `: shutdown` comment, then the end of the
  body; EventSource reconnects with Last-Event-ID), a WebSocket gets close code 1001 (going
  away). No stream waits for a timeout, and nothing is cancelled under the server's feet.
- SSE sends a `: ping` comment after `heartbeat_s` without output; WebSocket keep-alive is the
  server's protocol-level ping.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import anyio
import msgspec
from fastapi import FastAPI
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from fxconnector.core.errors import SurfaceUnavailable
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish import http_common as params
from fxconnector.runtime.publish import openapi_doc as doc
from fxconnector.runtime.publish.http_common import (
    ApiDeps,
    ApiError,
    PushSettings,
    PushStreams,
    get_route,
)
from fxconnector.runtime.publish.surface_reader import (
    STREAM_START,
    SurfaceReader,
    parse_stream_id,
)

_STREAM_PARAMS: Final = ("symbols", "tfs", "cursor")
_POLICY_VIOLATION: Final = 1008
_GOING_AWAY: Final = 1001
_SSE_SHUTDOWN: Final = b": shutdown\n\n"


class _EventKey(msgspec.Struct):
    symbol: str
    tf: str


_EVENT_KEY = msgspec.json.Decoder(_EventKey)


class _Frame(msgspec.Struct):
    id: str
    event: msgspec.Raw


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What a push client asked for: a selection and where to start (None: the newest entry)."""

    symbols: frozenset[str]
    tfs: frozenset[str]
    cursor: str | None

    def selects(self, event: bytes) -> bool:
        try:
            key = _EVENT_KEY.decode(event)
        except msgspec.DecodeError:
            return False  # not an ohlcv event: the writer never stores one
        return key.symbol in self.symbols and key.tf in self.tfs


@dataclass(frozen=True, slots=True)
class Notice:
    """An error for the client; the stream goes on."""

    code: str
    message: str


def parse_stream_request(
    query: QueryParams, deps: ApiDeps, last_event_id: str | None = None
) -> StreamRequest:
    """Validate the push parameters (ApiError, as for the HTTP API)."""
    values = params.check_names(query, _STREAM_PARAMS)
    symbols = params.comma_list(values, "symbols")
    tfs = params.comma_list(values, "tfs")
    chosen_symbols = [params.symbol(s, deps.symbols) for s in symbols or deps.symbols]
    chosen_tfs = [params.timeframe(tf, deps.timeframes).value for tf in tfs or []] or [
        tf.value for tf in deps.timeframes
    ]
    cursor = values.get("cursor")
    if last_event_id:
        cursor = params.stream_id(last_event_id, "Last-Event-ID")
    elif cursor is not None:
        cursor = params.stream_id(cursor, "cursor")
    return StreamRequest(frozenset(chosen_symbols), frozenset(chosen_tfs), cursor)


async def follow(
    reader: SurfaceReader, request: StreamRequest, settings: PushSettings
) -> AsyncGenerator[list[tuple[str, bytes]] | Notice, None]:
    """Selected entries after the cursor, one (possibly empty) batch per read, forever."""
    cursor = request.cursor
    check_expiry = cursor is not None and cursor != STREAM_START
    delay_s = settings.backoff_initial_s
    while True:
        try:
            if cursor is None:
                cursor = await reader.last_id()
            if check_expiry:
                check_expiry = False
                oldest = await reader.first_id()
                if oldest is not None and parse_stream_id(cursor) < parse_stream_id(oldest):
                    yield Notice(
                        "cursor_expired",
                        f"entries after {cursor} were trimmed (oldest kept: {oldest}); "
                        "reload /api/bars",
                    )
            entries = await reader.read_events(
                cursor, block_ms=settings.block_ms, count=settings.batch
            )
        except SurfaceUnavailable as exc:
            yield Notice("unavailable", str(exc)[:500])
            jitter = random.uniform(0.5, 1.0)  # noqa: S311 - backoff jitter, not a secret
            await asyncio.sleep(delay_s * jitter)
            delay_s = min(delay_s * 2, settings.backoff_max_s)
            continue
        delay_s = settings.backoff_initial_s
        if entries:
            cursor = entries[-1][0]
        yield [(entry_id, data) for entry_id, data in entries if request.selects(data)]


# --- SSE --------------------------------------------------------------------------------------


def sse_event(entry_id: str, data: bytes) -> bytes:
    """One SSE `bar` event (multi-line data is split into data lines, as SSE requires)."""
    lines = b"".join(b"data: " + line + b"\n" for line in data.splitlines())
    return b"id: " + entry_id.encode() + b"\nevent: bar\n" + lines + b"\n"


async def sse_chunks(
    reader: SurfaceReader, request: StreamRequest, settings: PushSettings
) -> AsyncGenerator[bytes, None]:
    """The SSE body: events, errors and heartbeats, forever."""
    yield b"retry: 1000\n\n"  # the reconnect delay; it also sends the headers at once
    last_write = time.monotonic()
    async with contextlib.aclosing(follow(reader, request, settings)) as items:
        async for item in items:
            if isinstance(item, Notice):
                chunk = b"event: error\ndata: " + params.error_body(item.code, item.message)
                yield chunk + b"\n\n"
            elif item:
                yield b"".join(sse_event(entry_id, data) for entry_id, data in item)
            elif time.monotonic() - last_write >= settings.heartbeat_s:
                yield b": ping\n\n"
            else:
                continue
            last_write = time.monotonic()


class EventStreamResponse(StreamingResponse):
    """A never-ending stream that is cancelled as soon as the client disconnects."""

    media_type = "text/event-stream"

    def __init__(self, chunks: AsyncGenerator[bytes, None], streams: PushStreams) -> None:
        super().__init__(chunks, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._chunks = chunks
        self._streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def start() -> None:
            nonlocal started
            if not started:
                started = True
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.status_code,
                        "headers": self.raw_headers,
                    }
                )

        async def send_all() -> None:
            await start()
            async for chunk in self._chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            with self._streams.opened():
                await _until_first(send_all, until_disconnect, self._streams.wait_closing)
                if self._streams.closing:  # the server is shutting down: end the body cleanly
                    await start()
                    await send({"type": "http.response.body", "body": _SSE_SHUTDOWN})
        except* OSError:
            pass  # the client went away in the middle of a write
        finally:
            with anyio.CancelScope(shield=True):
                await self._chunks.aclose()


async def _until_first(*tasks: Callable[[], Awaitable[None]]) -> None:
    """Run `tasks` together until the first returns; cancel the rest."""
    async with anyio.create_task_group() as group:

        async def run(task: Callable[[], Awaitable[None]]) -> None:
            await task()
            group.cancel_scope.cancel()

        for task in tasks:
            group.start_soon(run, task)


# --- WebSocket --------------------------------------------------------------------------------


async def _ws_send_all(
    websocket: WebSocket, reader: SurfaceReader, request: StreamRequest, settings: PushSettings
) -> None:
    async with contextlib.aclosing(follow(reader, request, settings)) as items:
        async for item in items:
            if isinstance(item, Notice):
                await websocket.send_text(params.error_body(item.code, item.message).decode())
                continue
            for entry_id, data in item:
                await websocket.send_text(encode(_Frame(entry_id, msgspec.Raw(data))).decode())


def install_push(app: FastAPI, deps: ApiDeps) -> doc.Paths:
    """Mount `/api/stream` (SSE) and `/ws` (WebSocket) on `app`; the OpenAPI paths added."""
    settings = deps.push

    async def stream(request: Request) -> Response:
        last_event_id = request.headers.get("last-event-id")
        chosen = parse_stream_request(request.query_params, deps, last_event_id)
        return EventStreamResponse(sse_chunks(deps.reader, chosen, settings), deps.streams)

    async def websocket_stream(websocket: WebSocket) -> None:
        try:
            chosen = parse_stream_request(websocket.query_params, deps)
        except ApiError as exc:
            await websocket.accept()
            await websocket.send_text(params.error_body(exc.code, exc.message).decode())
            await websocket.close(_POLICY_VIOLATION)
            return
        await websocket.accept()

        async def until_disconnect() -> None:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass  # a read-only stream: whatever the client sends is ignored

        streams = deps.streams
        try:
            with streams.opened():
                await _until_first(
                    lambda: _ws_send_all(websocket, deps.reader, chosen, settings),
                    until_disconnect,
                    streams.wait_closing,
                )
                if streams.closing:
                    await websocket.close(_GOING_AWAY, "server shutting down")
        except* (WebSocketDisconnect, OSError):
            pass  # the client went away in the middle of a send

    app.router.routes.append(get_route("/api/stream", stream))
    app.router.routes.append(WebSocketRoute("/ws", websocket_stream))
    summary = "Server-sent events: every bar update after a cursor"
    return {"/api/stream": doc.operation("stream", summary, _stream_doc(deps))}


def _stream_doc(deps: ApiDeps) -> dict[str, Any]:
    q = doc.query_parameter
    comma = {"type": "string", "pattern": "^[^,]+(,[^,]+)*$"}
    cursor = {"type": "string", "pattern": r"^\d+(-\d+)?$"}
    return {
        "parameters": [
            q("symbols", comma, f"Comma-separated symbols (default all: {','.join(deps.symbols)})"),
            q("tfs", comma, "Comma-separated timeframes (default all served)"),
            q(
                "cursor",
                cursor,
                "Start after this stream id (e.g. /api/bars' cursor); default: now",
            ),
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": cursor,
                "description": "Resume after this id (EventSource sends it); wins over cursor",
            },
        ],
        "responses": {
            "200": {
                "description": "An endless text/event-stream of `bar` events",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **doc.errors(400, 404, 422),
        },
    }
