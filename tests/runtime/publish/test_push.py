"""The push stream: SSE and WebSocket over a real uvicorn, fed from a real Redis stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from fxconnector.config.secrets import Secrets
from fxconnector.core.errors import ContractViolation, SurfaceUnavailable
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish.http_common import PushSettings
from fxconnector.runtime.publish.redis_connect import connect_redis
from fxconnector.runtime.publish.surface_reader import SurfaceReader, parse_stream_id
from tests.redis_server import RedisServer
from tests.runtime.publish.api_harness import SYMBOLS, T0, Stack, bar, running_stack

pytestmark = pytest.mark.redis

WAIT_S = 5.0  # every read in these tests gives up after this long


@pytest.fixture
def stack(redis_server: RedisServer) -> Iterator[Stack]:
    with running_stack(redis_server) as stack:
        yield stack


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=WAIT_S) as client:
        yield client


@dataclass(frozen=True)
class Message:
    """One SSE message: an event (`bar`, `error`) or a comment (kind `comment`)."""

    kind: str
    id: str | None
    data: str


def sse_messages(lines: Iterator[str]) -> Iterator[Message]:
    """Parse SSE lines (the subset the server speaks: id, event, data, comments, retry)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield Message(fields.get("event", "message"), fields.get("id"), "\n".join(data))
            fields, data = {}, []
        elif line.startswith(":"):
            yield Message("comment", None, line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value


def mixed_events(count: int, start_minute: int = 0) -> list[OhlcvEvent]:
    """Finals and previews of every symbol and timeframe, interleaved as the writer would."""
    out = []
    for i in range(start_minute, start_minute + count):
        symbol = SYMBOLS[i % 2]
        tf = Timeframe.M1 if i % 3 else Timeframe.M5
        out.append(bar(symbol, tf, T0 + i * tf.ms, final=bool(i % 4)))
    return out


def publish(stack: Stack, events: list[OhlcvEvent]) -> list[str]:
    return [stack.writer.publish(event) for event in events]


def read_bars(
    messages: Iterator[Message], count: int, *, skip_comments: bool = True
) -> list[tuple[str, str]]:
    """The next `count` bar events as (id, data); fails on anything but bars and comments."""
    out: list[tuple[str, str]] = []
    while len(out) < count:
        message = next(messages)
        if message.kind == "comment" and skip_comments:
            continue
        assert message.kind == "bar", message
        assert message.id is not None
        out.append((message.id, message.data))
    return out


def next_kind(messages: Iterator[Message], kind: str, limit: int = 200) -> Message:
    for _ in range(limit):
        message = next(messages)
        if message.kind == kind:
            return message
    raise AssertionError(f"no {kind} message in {limit}")


def as_pairs(entries: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    return [(entry_id, data.decode()) for entry_id, data in entries]


# --- SSE --------------------------------------------------------------------------------------


def test_sse_resumes_with_last_event_id_without_gap_or_duplicate(
    stack: Stack, http: httpx.Client
) -> None:
    publish(stack, mixed_events(30))
    cursor = http.get("/api/bars", params={"symbol": "EURUSD", "tf": "1m"}).json()["cursor"]
    assert cursor
    publish(stack, mixed_events(40, start_minute=30))

    received: list[tuple[str, str]] = []
    with http.stream("GET", "/api/stream", params={"cursor": cursor}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        received += read_bars(sse_messages(response.iter_lines()), 15)

    publish(stack, mixed_events(20, start_minute=70))
    pending = len(stack.writer.stream(after=received[-1][0]))
    resume = {"last-event-id": received[-1][0]}
    with http.stream("GET", "/api/stream", params={"cursor": cursor}, headers=resume) as response:
        messages = sse_messages(response.iter_lines())
        received += read_bars(messages, pending)  # the header wins over the cursor
        publish(stack, mixed_events(5, start_minute=90))  # live: wakes the blocking read
        received += read_bars(messages, 5)

    expected = as_pairs(stack.writer.stream(after=cursor))
    assert len(expected) == 65  # the cursor is the stream's head when /api/bars answered
    assert received == expected  # same ids, same bytes, in order: no gap, no duplicate


def test_sse_filters_by_symbol_and_timeframe_and_sends_heartbeats(
    stack: Stack, http: httpx.Client
) -> None:
    publish(stack, mixed_events(60))
    expected = [
        (entry_id, data)
        for entry_id, data in as_pairs(stack.writer.stream())
        if json.loads(data)["symbol"] == "GBPUSD" and json.loads(data)["tf"] == "5m"
    ]
    assert expected
    query = {"symbols": "GBPUSD", "tfs": "5m", "cursor": "0-0"}
    with http.stream("GET", "/api/stream", params=query) as response:
        messages = sse_messages(response.iter_lines())
        assert read_bars(messages, len(expected)) == expected
        # Nothing else matches: the next message is a heartbeat, not another bar.
        assert next(messages) == Message("comment", None, "ping")


def test_sse_without_cursor_starts_after_the_newest_entry(stack: Stack, http: httpx.Client) -> None:
    publish(stack, mixed_events(10))
    with http.stream("GET", "/api/stream") as response:
        messages = sse_messages(response.iter_lines())
        next_kind(messages, "comment")  # a heartbeat: the stream's start is fixed by now
        (new_id,) = publish(stack, mixed_events(1, start_minute=10))
        assert read_bars(messages, 1)[0][0] == new_id


def test_many_clients_share_one_blocking_read_of_redis(redis_server: RedisServer) -> None:
    slow = PushSettings(heartbeat_s=0.2, block_ms=1500)
    with running_stack(redis_server, push=slow) as stack:
        probe = redis_server.client()
        try:
            with contextlib.ExitStack() as clients:
                http = clients.enter_context(httpx.Client(base_url=stack.url, timeout=WAIT_S))
                streams = [
                    clients.enter_context(http.stream("GET", "/api/stream", params=query))
                    for query in ({}, {"symbols": "EURUSD"}, {"tfs": "5m"}, {}, {})
                ]
                assert all(response.status_code == 200 for response in streams)
                assert wait_for(lambda: blocked_clients(probe) == 1)  # the fan-out's read
                (new_id,) = publish(stack, mixed_events(1))  # EURUSD 5m preview
                for response in streams:
                    assert read_bars(sse_messages(response.iter_lines()), 1)[0][0] == new_id
                assert blocked_clients(probe) <= 1
        finally:
            probe.close()


def test_sse_reports_redis_outage_and_recovers(stack: Stack, http: httpx.Client) -> None:
    ids = publish(stack, mixed_events(3))
    with http.stream("GET", "/api/stream", params={"cursor": "0-0"}) as response:
        messages = sse_messages(response.iter_lines())
        assert [entry_id for entry_id, _ in read_bars(messages, 3)] == ids
        stack.redis_server.kill()
        error = next_kind(messages, "error")
        assert error.id is None  # errors never move Last-Event-ID
        assert json.loads(error.data)["error"]["code"] == "unavailable"
        stack.redis_server.restart()
        (new_id,) = publish(stack, mixed_events(1, start_minute=3))
        assert next_kind(messages, "bar").id == new_id


def test_sse_reports_an_expired_cursor_then_streams_what_is_left(
    stack: Stack, http: httpx.Client
) -> None:
    ids = publish(stack, mixed_events(20))
    stack.writer.client.xtrim(stack.keys.events, maxlen=5, approximate=False)
    with http.stream("GET", "/api/stream", params={"cursor": ids[1]}) as response:
        messages = sse_messages(response.iter_lines())
        error = next_kind(messages, "error")
        assert json.loads(error.data)["error"]["code"] == "cursor_expired"
        assert [entry_id for entry_id, _ in read_bars(messages, 5)] == ids[-5:]


@pytest.mark.parametrize(
    ("query", "headers", "status", "code"),
    [
        ({"symbols": "XAUUSD"}, {}, 404, "unknown_symbol"),
        ({"tfs": "1m,4h"}, {}, 404, "unknown_timeframe"),
        ({"tfs": "1m,,5m"}, {}, 422, "invalid_parameter"),
        ({"cursor": "latest"}, {}, 422, "invalid_parameter"),
        ({}, {"last-event-id": "12-ab"}, 422, "invalid_parameter"),
        ({"symbol": "EURUSD"}, {}, 400, "unknown_parameter"),
    ],
)
def test_sse_bad_parameters_are_json_errors(
    http: httpx.Client, query: dict[str, str], headers: dict[str, str], status: int, code: str
) -> None:
    response = http.get("/api/stream", params=query, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


# --- WebSocket --------------------------------------------------------------------------------


def ws_url(stack: Stack, query: str) -> str:
    return stack.url.replace("http://", "ws://") + "/ws?" + query


def ws_frames(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    frames = []
    for _ in range(count):
        frame = ws.recv(timeout=WAIT_S)
        assert isinstance(frame, str)  # text frames
        frames.append(json.loads(frame))
    return frames


def test_websocket_gets_the_same_events_as_sse(stack: Stack, http: httpx.Client) -> None:
    ids = publish(stack, mixed_events(40))
    query = f"symbols=EURUSD&tfs=1m,5m&cursor={ids[4]}"
    expected = [
        (entry_id, data)
        for entry_id, data in as_pairs(stack.writer.stream(after=ids[4]))
        if json.loads(data)["symbol"] == "EURUSD"
    ]
    with http.stream("GET", f"/api/stream?{query}") as response:
        over_sse = read_bars(sse_messages(response.iter_lines()), len(expected))
    with connect(ws_url(stack, query), open_timeout=WAIT_S) as ws:
        over_ws = ws_frames(ws, len(expected))
        (live_id,) = publish(stack, [bar("EURUSD", Timeframe.M1, T0 + 99 * MINUTE_MS)])
        assert ws_frames(ws, 1)[0]["id"] == live_id
    assert over_sse == expected
    assert [set(frame) for frame in over_ws] == [{"id", "event"}] * len(expected)
    assert [(frame["id"], frame["event"]) for frame in over_ws] == [
        (entry_id, json.loads(data)) for entry_id, data in over_sse
    ]


def test_websocket_bad_parameters_get_an_error_frame_and_a_close(stack: Stack) -> None:
    with connect(ws_url(stack, "symbols=NOPE1"), open_timeout=WAIT_S) as ws:
        (frame,) = ws_frames(ws, 1)
        assert frame["error"]["code"] == "unknown_symbol"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=WAIT_S)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008


def test_websocket_reports_redis_outage_and_keeps_going(stack: Stack) -> None:
    ids = publish(stack, mixed_events(2))
    with connect(ws_url(stack, "cursor=0-0"), open_timeout=WAIT_S) as ws:
        assert [frame["id"] for frame in ws_frames(ws, 2)] == ids
        ws.send("clients may talk; the stream ignores it")
        stack.redis_server.kill()
        assert ws_frames(ws, 1)[0]["error"]["code"] == "unavailable"
        stack.redis_server.restart()
        (new_id,) = publish(stack, mixed_events(1, start_minute=2))
        for _ in range(50):
            (frame,) = ws_frames(ws, 1)
            if "id" in frame:
                break
            assert frame["error"]["code"] == "unavailable"  # more retries before the restart
        assert frame["id"] == new_id


# --- the reader that feeds both -------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
def test_reader_reads_the_layout_over_resp2_and_resp3(stack: Stack, protocol: int) -> None:
    finals = [bar("EURUSD", Timeframe.M1, T0 + i * MINUTE_MS) for i in range(4)]
    ids = publish(stack, [*finals, bar("EURUSD", Timeframe.M1, T0 + 4 * MINUTE_MS, final=False)])
    stack.writer.client.set(stack.keys.status, b'{"ts":1}')
    stack.writer.client.set(stack.keys.status_snapshot, b'{"errors":[],"last_command":null}')
    stack.writer.client.hset(stack.keys.price_tik, "EURUSD", b'{"symbol":"EURUSD"}')

    async def read() -> dict[str, Any]:
        client = redis.asyncio.Redis.from_url(stack.redis_server.url, protocol=protocol)
        reader = SurfaceReader(client, stack.keys)
        try:
            return {
                "snapshot": await reader.snapshot("EURUSD", Timeframe.M1),
                "absent": await reader.snapshot("GBPUSD", Timeframe.M5),
                "first3": await reader.read_events("0-0", block_ms=0, count=3),
                "rest": await reader.read_events(ids[2], block_ms=0, count=100),
                "none": await reader.read_events(ids[-1], block_ms=20, count=100),
                "last": await reader.last_id(),
                "first": await reader.first_id(),
                "status": await reader.status(),
                "status_snapshot": await reader.status_snapshot(),
                "ticks": await reader.ticks(),
            }
        finally:
            await client.aclose()

    got = asyncio.run(read())
    # The snapshot, its own cursor, and the stream's head read with it (the preview's id).
    assert got["snapshot"] == (encode(finals), ids[3], ids[-1])
    assert got["absent"] == (b"[]", None, None)
    entries = stack.writer.stream()
    assert got["first3"] == entries[:3]
    assert got["rest"] == entries[3:]
    assert got["none"] == []
    assert (got["last"], got["first"]) == (ids[-1], ids[0])
    assert got["status"] == b'{"ts":1}'
    assert got["status_snapshot"] == b'{"errors":[],"last_command":null}'
    assert got["ticks"] == {"EURUSD": b'{"symbol":"EURUSD"}'}


def test_reader_turns_every_redis_failure_into_surface_unavailable(stack: Stack) -> None:
    stack.writer.client.set(stack.keys.events, b"not a stream")  # WRONGTYPE for XREAD/XRANGE

    async def failures() -> list[str]:
        client = connect_redis(stack.redis_server.url, Secrets())
        reader = SurfaceReader(client, stack.keys)
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: reader.read_events("0-0", block_ms=0, count=1),
            reader.last_id,
            reader.first_id,
        ]
        down: list[Callable[[], Awaitable[object]]] = [
            lambda: reader.snapshot("EURUSD", Timeframe.M1),
            lambda: reader.snapshot_cursor("EURUSD", Timeframe.M1),
            lambda: reader.read_events("0-0", block_ms=10, count=1),
            reader.last_id,
            reader.first_id,
            reader.status,
            reader.status_snapshot,
            reader.ticks,
        ]
        messages = []
        try:
            for call in calls:
                with pytest.raises(SurfaceUnavailable) as wrong_type:
                    await call()
                messages.append(str(wrong_type.value))
            stack.redis_server.kill()
            for call in down:
                with pytest.raises(SurfaceUnavailable) as unavailable:
                    await call()
                messages.append(str(unavailable.value))
        finally:
            await client.aclose()
        return messages

    messages = asyncio.run(failures())
    assert len(messages) == 11
    assert all(message.startswith("redis ") for message in messages)


@pytest.mark.parametrize("text", ["", "abc", "1-", "-1", "1-2-3", "1.5", "1 -2", "9" * 21])
def test_stream_ids_are_checked(text: str) -> None:
    with pytest.raises(ContractViolation):
        parse_stream_id(text)


def test_stream_ids_compare_as_numbers() -> None:
    assert parse_stream_id("1700000000000") == (1_700_000_000_000, 0)
    assert parse_stream_id("9-10") > parse_stream_id("9-9")  # not as strings


# --- helpers ----------------------------------------------------------------------------------


def blocked_clients(client: Any) -> int:
    return int(client.info("clients")["blocked_clients"])


def wait_for(condition: Any, timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
