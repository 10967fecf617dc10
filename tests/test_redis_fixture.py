"""The test Redis fixture itself: a real server that survives a kill and restart."""

from __future__ import annotations

from tests.redis_server import RedisServer


def test_real_server_restarts_empty(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        client.set("k", "v")
        assert client.get("k") == b"v"
    redis_server.restart()
    with redis_server.client() as fresh:
        assert fresh.get("k") is None
        assert fresh.ping()
