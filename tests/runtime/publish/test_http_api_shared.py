"""The API in a shared namespace (both layouts, real Redis, real server): a symbol another
process publishes appears on the refresh period, its bars come from its Redis snapshot, a range
of it is a 409, its status is the detail its owner wrote, and SSE streams its events."""

from __future__ import annotations

import json
from typing import Final

import httpx
import pytest

from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.publish.keys import SurfaceKeys
from tests.redis_server import RedisServer
from tests.runtime.publish.api_harness import (
    SYMBOLS,
    T0,
    running_stack,
    series,
    valid_symbol_status,
)
from tests.runtime.publish.test_push import sse_messages

pytestmark = pytest.mark.redis

WAIT_S: Final = 10.0
FOREIGN: Final = "XAUUSD"
M1: Final = Timeframe.M1


@pytest.mark.parametrize("cluster", [False, True], ids=["single", "cluster"])
def test_a_foreign_symbol_is_served_from_redis(redis_server: RedisServer, cluster: bool) -> None:
    clock = ManualClock(T0)
    keys = SurfaceKeys("fxtest", cluster=cluster)
    with (
        running_stack(redis_server, keys=keys, shared_now_ms=clock.now_ms) as stack,
        httpx.Client(base_url=stack.url, timeout=WAIT_S) as http,
    ):
        redis = stack.writer.client
        redis.sadd(keys.symbols, *SYMBOLS)
        assert http.get("/api/symbols").json()["symbols"] == list(SYMBOLS)
        assert http.get("/api/bars", params={"symbol": FOREIGN, "tf": "1m"}).status_code == 404
        # Another process starts publishing FOREIGN: seen once the period has passed.
        redis.sadd(keys.symbols, FOREIGN)
        bars = series(FOREIGN, M1, 30)
        for bar in bars:
            stack.writer.publish(bar)
        clock.set(T0 + 1_999)
        assert http.get("/api/symbols").json()["symbols"] == list(SYMBOLS)
        clock.set(T0 + 2_000)
        assert http.get("/api/symbols").json()["symbols"] == [*SYMBOLS, FOREIGN]
        # Its bars: the snapshot's (no local store, no preview).
        body = http.get("/api/bars", params={"symbol": FOREIGN, "tf": "1m", "limit": 10}).json()
        assert body["bars"] == json.loads(encode(bars[-10:]))
        assert body["preview"] is None
        # A range of it: a clear 409, never guessed bars.
        ranged = http.get(
            "/api/bars", params={"symbol": FOREIGN, "tf": "1m", "from_ms": T0, "limit": 10}
        )
        assert ranged.status_code == 409
        assert ranged.json()["error"]["code"] == "foreign_symbol_range"
        # Its status: 404 while nobody writes it, then the detail its owner wrote.
        missing = http.get("/api/status", params={"symbol": FOREIGN})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "status_not_published"
        detail = valid_symbol_status(FOREIGN)
        redis.set(keys.status_symbol(FOREIGN), detail)
        assert http.get("/api/status", params={"symbol": FOREIGN}).content == detail
        # SSE: a client of the foreign symbol gets its next events.
        query = {"symbols": FOREIGN, "tfs": "1m"}
        with http.stream("GET", "/api/stream", params=query) as response:
            assert response.status_code == 200
            messages = sse_messages(response.iter_lines())
            more = series(FOREIGN, M1, 33)[30:]
            got: list[dict[str, object]] = []
            sent = False
            for message in messages:
                if message.kind == "comment" and not sent:
                    for bar in more:  # the client is subscribed (its first heartbeat came)
                        stack.writer.publish(bar)
                    sent = True
                elif message.kind == "bar":
                    got.append(json.loads(message.data))
                    if len(got) == len(more):
                        break
            assert got == json.loads(encode(more))
