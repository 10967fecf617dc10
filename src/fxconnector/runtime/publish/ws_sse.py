"""The push stream (DESIGN §8): SSE at `/api/stream` and a WebSocket at `/ws`.

Rules:
- Both are fed by the process's one events reader (`fanout`), never by a Redis read of their
  own per client. A client starts after its cursor: the `Last-Event-ID` header when present
  (SSE reconnects), else the `cursor` query parameter (e.g. the one `/api/bars` gave), else the
  newest entry at connect time; it gets every later selected entry exactly once, in stream
  order (per symbol's stream in the cluster layout). Cursors: see `push_cursor`.
- Events go out as the bytes the writer stored (canonical `ohlcv_event_v1`, validated when read
  back), never re-encoded: SSE `id: <cursor>` / `event: bar` / `data: <json>`; WebSocket text
  frames `{"id": <cursor>, "event": {...}}`. `symbols` and `tfs` filter by the event's fields.
- Notices never end a stream: `{"error": {"code": "unavailable", ...}}` while Redis is down,
  `cursor_expired` when the cursor is older than what the trimmed stream keeps (reload
  /api/bars), as SSE `event: error` (no id, so Last-Event-ID is untouched) or a WebSocket text
  frame. One does: `slow_consumer`, when the client's bounded queue filled up; SSE then ends
  the response after the error (EventSource reconnects with Last-Event-ID), a WebSocket gets
  the error frame and close code 1013 (try again later) with reason `slow_consumer`. The
  server never waits on a client: a client stuck in a write is cut off all the same.
- A stream ends when the client disconnects: a watcher task cancels the writer at once.
- A stream also ends at once when the server shuts down (`ApiDeps.streams.close()`), before
  Redis goes: SSE ends its response cleanly (a last `: shutdown` comment, then the end of the
  body; EventSource reconnects with Last-Event-ID), a WebSocket gets close code 1001 (going
  away). No stream waits for a timeout, and nothing is cancelled under the server's feet.
- SSE sends a `: ping` comment after `heartbeat_s` without output; WebSocket keep-alive is the
  server's protocol-level ping.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import anyio
from fastapi import FastAPI
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from fxconnector.runtime.publish import http_common as params
from fxconnector.runtime.publish import openapi_doc as doc
from fxconnector.runtime.publish.event_check import EventCheck
from fxconnector.runtime.publish.fanout import Fanout, register_metrics
from fxconnector.runtime.publish.http_common import (
    ApiDeps,
    ApiError,
    PushStreams,
    get_route,
)
from fxconnector.runtime.publish.push_cursor import parse_cursor, smc_streams_of, streams_of
from fxconnector.runtime.publish.push_kinds import PushFeeds
from fxconnector.runtime.publish.push_queue import Item, Notice, Selection, Subscription
from fxconnector.runtime.smc.check import HintCheck
from fxconnector.runtime.smc.push import SmcFeed

_STREAM_PARAMS: Final = ("symbols", "tfs", "cursor", "kinds")
_KINDS: Final = ("bars", "smc")
_POLICY_VIOLATION: Final = 1008
_GOING_AWAY: Final = 1001
_TRY_AGAIN_LATER: Final = 1013
_SSE_SHUTDOWN: Final = b": shutdown\n\n"
_LAST_WORDS_S: Final = 1.0  # how long a cut-off client is given to take its error


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """A validated push request: per kind asked for (`bars`, `smc`, in that order) the
    selection with its starting positions."""

    selections: tuple[tuple[str, Selection], ...]

    @property
    def selection(self) -> Selection:
        """The first kind's selection (the only one unless `kinds=bars,smc`)."""
        return self.selections[0][1]

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, _ in self.selections)


def parse_kinds(values: dict[str, str], deps: ApiDeps) -> tuple[str, ...]:
    """`kinds`: `bars` (the default), `smc`, or both, each once."""
    asked = params.comma_list(values, "kinds") or ["bars"]
    for kind in asked:
        if kind not in _KINDS:
            raise ApiError(
                422,
                "invalid_parameter",
                f"kinds has {params.quote(kind)}: known kinds are bars, smc",
            )
    if len(set(asked)) != len(asked):
        raise ApiError(422, "invalid_parameter", "kinds names a kind twice")
    if "smc" in asked and not deps.smc_timeframes:
        raise ApiError(404, "smc_disabled", "the SMC layer is not enabled ([smc] enabled)")
    return tuple(kind for kind in _KINDS if kind in asked)


def parse_stream_request(
    query: QueryParams, deps: ApiDeps, last_event_id: str | None = None
) -> StreamRequest:
    """Validate the push parameters (ApiError, as for the HTTP API)."""
    values = params.check_names(query, _STREAM_PARAMS)
    kinds = parse_kinds(values, deps)
    symbols = params.comma_list(values, "symbols")
    tfs = params.comma_list(values, "tfs")
    served = deps.served_symbols()
    chosen_symbols = [params.symbol(s, served) for s in symbols or served]
    chosen_tfs = [params.timeframe(tf, deps.timeframes).value for tf in tfs or []] or [
        tf.value for tf in deps.timeframes
    ]
    keys = deps.reader.keys
    name, text = "cursor", values.get("cursor")
    if last_event_id:
        name, text = "Last-Event-ID", last_event_id
    texts: list[str | None] = [text] if len(kinds) == 1 else [None, None]
    if len(kinds) > 1 and text is not None:
        bars_text, bar, smc_text = text.partition("|")
        if not bar:
            raise ApiError(
                422,
                "invalid_parameter",
                f"{name} for kinds=bars,smc must be <bars cursor>|<smc cursor> "
                f"(either may be empty: from now), got {params.quote(text)}",
            )
        texts = [bars_text or None, smc_text or None]
    selections: list[tuple[str, Selection]] = []
    for kind, cursor in zip(kinds, texts, strict=True):
        streams_for = smc_streams_of if kind == "smc" else streams_of
        positions = None
        if cursor is not None:
            positions = parse_cursor(cursor, name, keys, chosen_symbols, streams_for)
        selection = Selection(frozenset(chosen_symbols), frozenset(chosen_tfs), positions)
        selections.append((kind, selection))
    return StreamRequest(tuple(selections))


def _error_chunk(notice: Notice) -> bytes:
    return b"event: error\ndata: " + notice.body() + b"\n\n"


# --- SSE --------------------------------------------------------------------------------------


async def sse_chunks(items: AsyncGenerator[Item, None]) -> AsyncGenerator[bytes, None]:
    """The SSE body: events, errors and heartbeats, until the fan-out ends it."""
    yield b"retry: 1000\n\n"  # the reconnect delay; it also sends the headers at once
    async with contextlib.aclosing(items):  # closing it leaves the fan-out at once
        async for item in items:
            if item is None:
                yield b": ping\n\n"
            elif isinstance(item, Notice):
                yield _error_chunk(item)
                if item.final:
                    return
            else:
                yield item.sse()


class EventStreamResponse(StreamingResponse):
    """A never-ending stream, cancelled as soon as the client disconnects or falls behind."""

    media_type = "text/event-stream"

    def __init__(
        self,
        chunks: AsyncGenerator[bytes, None],
        streams: PushStreams,
        subs: Sequence[Subscription],
    ) -> None:
        super().__init__(chunks, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._chunks = chunks
        self._streams = streams
        self._subs = subs

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
            await send({"type": "http.response.body", "body": b""})  # cut off: ends the body

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            with self._streams.opened():
                await _until_first(
                    send_all,
                    until_disconnect,
                    self._streams.wait_closing,
                    lambda: _cut_off_when_slow(self._subs),
                )
                if self._streams.closing:  # the server is shutting down: end the body cleanly
                    with anyio.move_on_after(_LAST_WORDS_S):
                        await start()
                        await send({"type": "http.response.body", "body": _SSE_SHUTDOWN})
        except* OSError:
            pass  # the client went away in the middle of a write
        finally:
            with anyio.CancelScope(shield=True):
                await self._chunks.aclose()


async def _cut_off_when_slow(subs: Sequence[Subscription]) -> None:
    """Returns (cancelling the writer) once one of `subs` overflowed and its writer did not end
    the stream itself within `_LAST_WORDS_S` (it is stuck writing to a client that reads
    nothing)."""
    if len(subs) == 1:
        await subs[0].overflowed.wait()
        await anyio.sleep(_LAST_WORDS_S)
        return
    async with anyio.create_task_group() as group:

        async def wait(sub: Subscription) -> None:
            await sub.overflowed.wait()
            group.cancel_scope.cancel()

        for sub in subs:
            group.start_soon(wait, sub)
    await anyio.sleep(_LAST_WORDS_S)


async def _until_first(*tasks: Callable[[], Awaitable[None]]) -> None:
    """Run `tasks` together until the first returns; cancel the rest."""
    async with anyio.create_task_group() as group:

        async def run(task: Callable[[], Awaitable[None]]) -> None:
            await task()
            group.cancel_scope.cancel()

        for task in tasks:
            group.start_soon(run, task)


# --- WebSocket --------------------------------------------------------------------------------


async def _ws_send_all(websocket: WebSocket, items: AsyncIterator[Item]) -> None:
    async for item in items:
        if item is None:
            continue  # keep-alive is the protocol's ping
        if isinstance(item, Notice):
            await websocket.send_text(item.body().decode())
            if item.final:
                await websocket.close(_TRY_AGAIN_LATER, item.code)
                return
            continue
        for frame in item.ws():
            await websocket.send_text(frame)


def make_fanout(deps: ApiDeps) -> Fanout:
    """The process's one events reader for `deps` (install_push makes it)."""
    return Fanout(
        deps.push_reader or deps.reader,
        deps.reader,
        EventCheck(deps.rejects, deps.calendars),
        deps.symbols,
        deps.push,
        until=deps.streams.wait_closing,
        served=deps.served,
    )


def make_smc_fanout(deps: ApiDeps) -> Fanout:
    """The process's one reader of the SMC hint stream(s) (`kinds=smc`)."""
    return Fanout(
        deps.push_reader or deps.reader,
        deps.reader,
        SmcFeed(HintCheck(deps.rejects)),
        deps.symbols,
        deps.push,
        until=deps.streams.wait_closing,
        served=deps.served,
    )


def install_push(app: FastAPI, deps: ApiDeps) -> doc.Paths:
    """Mount `/api/stream` (SSE) and `/ws` (WebSocket) on `app`; the OpenAPI paths added."""
    fanout = make_fanout(deps)
    register_metrics(fanout, deps.metrics_registry)
    app.state.fanout = fanout
    feeds = PushFeeds(fanout, make_smc_fanout(deps) if deps.smc_timeframes else None)
    app.state.smc_fanout = feeds.smc
    timeout_s = deps.push.heartbeat_s

    async def stream(request: Request) -> Response:
        last_event_id = request.headers.get("last-event-id")
        await deps.refresh_symbols()
        chosen = parse_stream_request(request.query_params, deps, last_event_id)
        items, subs = await feeds.follow(chosen.selections, timeout_s)
        return EventStreamResponse(sse_chunks(items), deps.streams, subs)

    async def websocket_stream(websocket: WebSocket) -> None:
        try:
            await deps.refresh_symbols()
            chosen = parse_stream_request(websocket.query_params, deps)
            items, subs = await feeds.follow(chosen.selections, timeout_s)
        except ApiError as exc:
            await websocket.accept()
            await websocket.send_text(params.error_body(exc.code, exc.message).decode())
            await websocket.close(_POLICY_VIOLATION)
            return
        await websocket.accept()

        async def until_disconnect() -> None:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass  # a read-only stream: whatever the client sends is ignored

        async def send_all() -> None:
            async with contextlib.aclosing(items) as following:
                await _ws_send_all(websocket, following)

        streams = deps.streams
        try:
            with streams.opened():
                await _until_first(
                    send_all,
                    until_disconnect,
                    streams.wait_closing,
                    lambda: _cut_off_when_slow(subs),
                )
                with anyio.move_on_after(_LAST_WORDS_S):
                    if websocket.application_state is WebSocketState.DISCONNECTED:
                        pass  # closed already (the slow_consumer notice closes it)
                    elif streams.closing:
                        await websocket.close(_GOING_AWAY, "server shutting down")
                    elif any(sub.overflowed.is_set() for sub in subs):
                        await websocket.close(_TRY_AGAIN_LATER, "slow_consumer")
        except* (WebSocketDisconnect, OSError, RuntimeError):
            pass  # the client went away in the middle of a send (or was closed already)

    app.router.routes.append(get_route("/api/stream", stream))
    app.router.routes.append(WebSocketRoute("/ws", websocket_stream))
    summary = "Server-sent events: every bar update after a cursor"
    return {"/api/stream": doc.operation("stream", summary, _stream_doc(deps))}


def _stream_doc(deps: ApiDeps) -> dict[str, Any]:
    q = doc.query_parameter
    comma = {"type": "string", "pattern": "^[^,]+(,[^,]+)*$"}
    one = r"(\d+(-\d+)?|[^:,|]+:\d+(-\d+)?(,[^:,|]+:\d+(-\d+)?)*)"
    cursor = {"type": "string", "pattern": f"^{one}$|^{one}?\\|{one}?$"}
    return {
        "parameters": [
            q(
                "symbols",
                comma,
                f"Comma-separated symbols (default all served: {','.join(deps.served_symbols())})",
            ),
            q("tfs", comma, "Comma-separated timeframes (default all served)"),
            q(
                "kinds",
                {"type": "string", "enum": ["bars", "smc", "bars,smc", "smc,bars"]},
                "What to stream: bars (the default: bar events, SSE `event: bar`), smc (SMC "
                "hints, smc_hint_v1, SSE `event: smc`, WebSocket `{id, smc}`), or both (ids "
                "are then `<bars cursor>|<smc cursor>`)",
            ),
            q(
                "cursor",
                cursor,
                "Start after this cursor (e.g. /api/bars' cursor, /api/smc's for kinds=smc, "
                "`B|S` for kinds=bars,smc; cluster layout, several symbols: "
                "SYM:<ms>-<seq>,...); default: now",
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
                "description": "An endless text/event-stream of `bar` (and/or `smc`) events",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **doc.errors(400, 404, 422),
        },
    }
