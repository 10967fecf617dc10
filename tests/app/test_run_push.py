"""The running connector's read side: what it reads back from its Redis is checked (an invalid
event never reaches a push client and shows in status errors[]), and it answers only to its
own host names."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from fxconnector.runtime.publish.keys import STREAM_FIELD, SurfaceKeys
from tests.app.connector import Connector

WAIT_S = 30.0


@pytest.fixture
def connector(tmp_path: Path) -> Iterator[Connector]:
    running = Connector(tmp_path / "var")
    try:
        yield running
    finally:
        running.cleanup()


@pytest.mark.slow
def test_an_invalid_event_in_redis_is_skipped_counted_and_in_status_errors(
    connector: Connector,
) -> None:
    connector.wait_ready()
    with (
        httpx.Client(base_url=connector.base, timeout=WAIT_S) as http,
        http.stream("GET", "/api/stream", params={"cursor": "0-0", "symbols": "EURUSD"}) as sse,
        redis.Redis(unix_socket_path=str(connector.workdir / "redis" / "redis.sock")) as r,
    ):
        assert sse.status_code == 200
        r.xadd(SurfaceKeys().events, {STREAM_FIELD: b'{"symbol":"EURUSD","tf":"1m","x":1}'})
        deadline = time.monotonic() + WAIT_S
        codes: set[str] = set()
        while "redis.invalid_event" not in codes:
            assert time.monotonic() < deadline, codes
            time.sleep(0.2)
            codes = {e["code"] for e in http.get("/api/status").json()["errors"]}
        (count,) = [
            float(line.split()[-1])
            for line in http.get("/metrics").text.splitlines()
            if line.startswith("fxconnector_push_invalid_events_total ")
        ]
        assert count >= 1  # per read: a catching-up client may read it too
        foreign = http.get("/api/symbols", headers={"host": "rebound.example:80"})
        assert foreign.status_code == 400
        assert foreign.json()["error"]["code"] == "host_not_allowed"
    assert connector.stop() == 0
