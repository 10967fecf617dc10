"""`/api/bars` and `/api/smc` hand out a cursor the trimmed stream still holds.

The bug (issue 14's chart, after ~5 minutes of `make run`): a 15m series gets a final rarely, so
its snapshot's own cursor falls behind what the stream keeps (retention trims by time). A page
that bootstraps from `/api/bars` and follows the push stream from the cursor it got was told
`cursor_expired`, reloaded `/api/bars`, got the same old cursor, and looped. These tests run
the real HTTP server on a real Redis, in the single-node and the cluster layouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import msgspec
import pytest
import redis
from bench.cluster_launch import RedisClusterNodes
from starlette.types import ASGIApp, Receive, Scope, Send

from fxconnector.client import Backoff, HttpClient
from fxconnector.config.secrets import Secrets
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.publish.http_api import create_app
from fxconnector.runtime.publish.http_common import PushSettings
from fxconnector.runtime.publish.keys import (
    SMC_HINTS_FIELD,
    SNAPSHOT_CURSOR_FIELD,
    STREAM_FIELD,
    SurfaceKeys,
)
from fxconnector.runtime.publish.redis_connect import connect_surface
from fxconnector.runtime.publish.surface_reader import SurfaceReader, fresh_cursor
from tests.redis_server import RedisServer
from tests.runtime.publish.api_harness import (
    T0,
    FakeConnector,
    FakeWriter,
    LiveServer,
    bar,
    make_deps,
)
from tests.runtime.publish.test_push import Message, sse_messages

pytestmark = pytest.mark.redis

WAIT_S = 5.0
M1, M15 = Timeframe.M1, Timeframe.M15
SYMBOL = "EURUSD"


class CountingApp:
    """The real app, with a count of `/api/bars` requests and an optional step (a coroutine
    function) run before an `/api/bars` answer leaves the server (a stream trimmed within a
    client's round trip)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.bars_requests = 0
        self.before_bars_answer: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/api/bars":
            await self.app(scope, receive, send)
            return
        self.bars_requests += 1

        async def sending(message: Any) -> None:
            step = self.before_bars_answer
            if message["type"] == "http.response.start" and step is not None:
                await step()  # on the server's event loop
            await send(message)

        await self.app(scope, receive, sending)


@dataclass
class Served:
    url: str
    app: CountingApp
    writer: FakeWriter
    keys: SurfaceKeys

    @property
    def stream(self) -> str:
        return self.keys.events_for(SYMBOL)

    @property
    def client(self) -> Any:
        return self.writer.client

    def trim_to(self, entry_id: str) -> None:
        """Trim the symbol's stream to `entry_id` (exactly), as the writer's retention does."""
        self.client.xtrim(self.stream, minid=entry_id, approximate=False)

    def oldest(self) -> str:
        ((entry_id, _),) = self.client.xrange(self.stream, count=1)
        return str(entry_id.decode())

    def newest(self) -> str:
        ((entry_id, _),) = self.client.xrevrange(self.stream, count=1)
        return str(entry_id.decode())


@contextlib.contextmanager
def serving(
    url: str, sync: Any, *, cluster: bool, push: PushSettings | None = None
) -> Iterator[Served]:
    keys = SurfaceKeys("fxtest", cluster=cluster)
    client = connect_surface(url, Secrets(), cluster=cluster)
    deps = replace(
        # Every request reads Redis (no cached cursor): the simulated minutes here run far
        # faster than the cache's recheck period, and the stream keeps less than a minute.
        make_deps(SurfaceReader(client, keys), FakeConnector(), recheck_s=0.0, push=push),
        timeframes=(M1, M15),
        smc_timeframes=(M15,),
    )
    app = CountingApp(create_app(deps))
    live = LiveServer(app, cleanup=client.aclose)
    live.start()
    try:
        yield Served(live.url, app, FakeWriter(sync, keys), keys)
    finally:
        live.stop()
        sync.close()


@pytest.fixture(params=["single", "cluster"])
def served(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[Served]:
    if request.param == "single":
        with serving(redis_server.url, redis_server.client(), cluster=False) as found:
            yield found
        return
    nodes: RedisClusterNodes = request.getfixturevalue("redis_cluster")
    sync = redis.RedisCluster.from_url(nodes.url, decode_responses=False)
    with serving(nodes.url, sync, cluster=True) as found:
        yield found


def quiet_series(served: Served, minutes: int = 40) -> tuple[list[OhlcvEvent], list[str]]:
    """Two 15m finals (the snapshot), then `minutes` of 1m finals and previews of the same
    symbol (the stream moves on, the 15m snapshot does not); returns the 15m finals and the
    ids written after them."""
    finals = [bar(SYMBOL, M15, T0 + i * M15.ms) for i in range(2)]
    for final in finals:
        served.writer.publish(final)
    later = []
    start = T0 + 2 * M15.ms
    for i in range(minutes):
        later.append(served.writer.publish(bar(SYMBOL, M1, start + i * M1.ms)))
        later.append(served.writer.publish(bar(SYMBOL, M1, start + (i + 1) * M1.ms, final=False)))
    return finals, later


def first_message(messages: Iterator[Message]) -> Message:
    while True:
        message = next(messages)
        if message.kind != "comment":
            return message


def test_bars_cursor_is_the_stream_head_read_with_the_snapshot(served: Served) -> None:
    finals, later = quiet_series(served)
    snapshot_cursor = served.client.hget(served.keys.snapshot(SYMBOL, M15), SNAPSHOT_CURSOR_FIELD)
    served.trim_to(later[-10])  # retention: the snapshot's own cursor is gone from the stream
    assert served.oldest() > snapshot_cursor.decode()
    with httpx.Client(base_url=served.url, timeout=WAIT_S) as http:
        body = http.get("/api/bars", params={"symbol": SYMBOL, "tf": "15m"}).json()
        assert body["cursor"] == later[-1] == served.newest()
        assert [b["open_ms"] for b in body["bars"]] == [b.open_ms for b in finals]
        # Following from it: the next 15m update, no `cursor_expired`, nothing before it.
        params = {"symbols": SYMBOL, "tfs": "15m", "cursor": body["cursor"]}
        with http.stream("GET", "/api/stream", params=params) as response:
            messages = sse_messages(response.iter_lines())
            next_final = bar(SYMBOL, M15, T0 + 2 * M15.ms)
            new_id = served.writer.publish(next_final)
            message = first_message(messages)
            assert (message.kind, message.id) == ("bar", new_id), message
            assert json.loads(message.data)["open_ms"] == next_final.open_ms
        # The cached window (same snapshot) is served with the stream's newest id too.
        served.writer.publish(bar(SYMBOL, M1, T0 + 50 * M1.ms, final=False))
        newest = served.newest()
        for _ in range(200):
            again = http.get("/api/bars", params={"symbol": SYMBOL, "tf": "15m"}).json()
            if again["cursor"] == newest:
                break
        assert again["cursor"] == newest
        assert len(again["bars"]) == 3


def test_smc_cursor_is_the_smc_stream_head(served: Served) -> None:
    keys = served.keys
    client = served.client
    stream = keys.smc_events_for(SYMBOL)
    old = client.xadd(stream, {STREAM_FIELD: b"{}"}).decode()
    client.hset(keys.smc_snapshot(SYMBOL, M15), mapping={SMC_HINTS_FIELD: b"[]", "cursor": old})
    for _ in range(5):  # hints of other series move the stream on
        client.xadd(stream, {STREAM_FIELD: b"{}"})
    head = client.xrevrange(stream, count=1)[0][0].decode()
    client.xtrim(stream, minid=head, approximate=False)
    with httpx.Client(base_url=served.url, timeout=WAIT_S) as http:
        body = http.get("/api/smc", params={"symbol": SYMBOL, "tf": "15m"}).json()
        assert body == {"cursor": head, "hints": [], "symbol": SYMBOL, "tf": "15m"}
        # No snapshot for a series yet: none of its hints is in the stream, the head is exact.
        other = "GBPUSD"
        other_stream = keys.smc_events_for(other)
        other_head = client.xadd(other_stream, {STREAM_FIELD: b"{}"}).decode()
        body = http.get("/api/smc", params={"symbol": other, "tf": "15m"}).json()
        assert body["cursor"] == other_head


@pytest.mark.timeout(120)
def test_a_long_run_of_a_15m_chart_loads_bars_a_bounded_number_of_times(served: Served) -> None:
    """A simulated hour: a 1m final and a 15m preview a minute, a 15m final every 15, the
    stream trimmed to its newest entry each minute (a retention shorter than a minute). One
    follower runs throughout, and a new page opens every minute and follows the stream:
    every client loads `/api/bars` once (before the fix, each page reloaded in a loop)."""
    _, later = quiet_series(served, minutes=3)
    served.trim_to(later[-1])

    async def next_change(changes: Any) -> OhlcvEvent:
        async with asyncio.timeout(WAIT_S):
            change = await anext(changes)
        return change.event  # type: ignore[no-any-return]

    async def run() -> tuple[int, list[int]]:
        backoff = Backoff(initial_s=0.01, cap_s=0.05, max_failures=50)
        follower = HttpClient(served.url, SYMBOL, ["15m"], backoff=backoff, limit=100)
        await follower.bootstrap()
        following: Any = follower.changes()
        page_loads = []
        start = T0 + 2 * M15.ms
        try:
            for minute in range(60):
                bucket = start + (minute // 15) * M15.ms
                update = (
                    bar(SYMBOL, M15, bucket)
                    if minute % 15 == 14
                    else msgspec.structs.replace(
                        bar(SYMBOL, M15, bucket, final=False),
                        event_ts=bucket + (minute % 15 + 1) * M1.ms,
                        tick_count=minute + 10,
                    )
                )
                async with HttpClient(served.url, SYMBOL, ["15m"], backoff=backoff) as page:
                    async with asyncio.timeout(WAIT_S):
                        await page.bootstrap()
                    watching: Any = page.changes()
                    served.writer.publish(bar(SYMBOL, M1, start + minute * M1.ms))
                    entry = served.writer.publish(update)
                    assert await next_change(following) == update
                    assert await next_change(watching) == update
                    await watching.aclose()
                    page_loads.append(page.stats.bootstraps)
                served.trim_to(entry)
            return follower.stats.bootstraps, page_loads
        finally:
            await following.aclose()
            await follower.aclose()

    before = served.app.bars_requests
    follower_loads, page_loads = asyncio.run(run())
    assert follower_loads == 1
    assert page_loads == [1] * 60
    assert served.app.bars_requests - before == 1 + 60


def test_fresh_cursor_is_the_newer_of_the_two_ids_compared_as_numbers() -> None:
    assert fresh_cursor(None, b"5-0") is None  # no snapshot: no cursor
    assert fresh_cursor(b"9-1", None) == "9-1"  # an empty stream: the snapshot's own
    assert fresh_cursor(b"9-1", b"10-0") == "10-0"  # not "9-1" > "10-0" as strings
    assert fresh_cursor("10-0", "9-9") == "10-0"  # a recreated stream never moves it back
