"""`fxconnector run` (the demo, SMC on) against `fxconnector smc --store`: batch == live.

The live SMC consumer of a real connector publishes the hints of its SSOT's series; the store
run over the same store prints the same hints, byte for byte, up to where the consumer stands.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.smc.state import SmcState, decode_state
from tests.app.connector import Connector
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

WAIT_S = 60.0
SERIES = [("EURUSD", Timeframe.M15), ("GBPUSD", Timeframe.H1)]


@pytest.fixture
def connector(tmp_path: Path) -> Iterator[Connector]:
    running = Connector(tmp_path / "var")
    try:
        yield running
    finally:
        running.cleanup()


def smc_state(client: redis.Redis, symbol: str, tf: Timeframe) -> SmcState | None:
    raw = client.hget(SurfaceKeys().smc_snapshot(symbol, tf), "state")
    return None if raw is None else decode_state(raw)


def test_the_live_consumer_publishes_exactly_the_store_run(connector: Connector) -> None:
    connector.wait_ready()
    keys = SurfaceKeys()
    client = redis.Redis(unix_socket_path=str(connector.workdir / "redis" / "redis.sock"))
    try:
        states: dict[tuple[str, Timeframe], SmcState] = {}
        deadline = time.monotonic() + WAIT_S
        while len(states) < len(SERIES):
            assert time.monotonic() < deadline, connector.tail()
            for symbol, tf in SERIES:
                state = smc_state(client, symbol, tf)
                if state is not None and state.bars > 50:
                    states[(symbol, tf)] = state
            time.sleep(0.2)
        entries: Any = client.xrange(keys.smc_events)
        metrics = httpx.get(f"{connector.base}/metrics", timeout=10).text
        assert "fxconnector_smc_hints_published_total" in metrics
    finally:
        client.close()
    assert connector.stop() == 0
    for (symbol, tf), state in states.items():
        tag = f'"symbol":"{symbol}","tf":"{tf.value}"'.encode()
        live = [fields[b"event"] for _, fields in entries if tag in fields[b"event"]]
        store = store_run(connector.workdir, symbol, tf, state.last_open_ms + tf.ms)
        assert len(store) > 10, (symbol, tf)
        assert live[: len(store)] == store, (symbol, tf)  # what the consumer stood at
        assert len(set(live)) == len(live)  # no hint twice


@pytest.mark.redis
@pytest.mark.timeout(400)
def test_a_restarted_connector_goes_on_exactly_where_its_smc_consumer_stood(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """With an external Redis the SMC snapshot outlives the process: the next run re-warms
    from its SSOT and publishes only what follows, so the stream is still the store run."""
    workdir = tmp_path / "var"
    symbol, tf = "EURUSD", Timeframe.M1
    client = redis.Redis.from_url(redis_server.url)
    try:
        first = Connector(workdir, "--redis-url", redis_server.url)
        try:
            first.wait_ready()
            before = wait_state(client, symbol, tf, lambda s: s.bars > 100, first)
            assert first.stop() == 0
        finally:
            first.cleanup()
        stopped = smc_state(client, symbol, tf)
        assert stopped is not None
        second = Connector(workdir, "--redis-url", redis_server.url)
        try:
            second.wait_ready()
            # The next final (the sim finalises a minute ~2 s after it ends).
            after = wait_state(
                client, symbol, tf, lambda s: s.last_open_ms > stopped.last_open_ms, second, 90
            )
            entries: Any = client.xrange(SurfaceKeys().smc_events)
            assert second.stop() == 0
        finally:
            second.cleanup()
    finally:
        client.close()
    assert after.origin_ms == before.origin_ms  # re-warmed, not started afresh
    tag = f'"symbol":"{symbol}","tf":"{tf.value}"'.encode()
    live = [fields[b"event"] for _, fields in entries if tag in fields[b"event"]]
    assert len(set(live)) == len(live)  # no hint twice across the restart
    store = store_run(workdir, symbol, tf, after.last_open_ms + tf.ms)
    assert live[: len(store)] == store


def wait_state(
    client: redis.Redis,
    symbol: str,
    tf: Timeframe,
    done: Callable[[SmcState], bool],
    connector: Connector,
    within_s: float = WAIT_S,
) -> SmcState:
    deadline = time.monotonic() + within_s
    while True:
        state = smc_state(client, symbol, tf)
        if state is not None and done(state):
            return state
        assert time.monotonic() < deadline, connector.tail()
        time.sleep(0.2)


def store_run(workdir: Path, symbol: str, tf: Timeframe, to_ms: int) -> list[bytes]:
    """`fxconnector smc --store` over the connector's SSOT, up to `to_ms` (exclusive)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fxconnector.app.main",
            "smc",
            "--store",
            str(workdir / "ssot"),
            "--symbol",
            symbol,
            "--tf",
            tf.value,
            "--to",
            str(to_ms),
        ],
        capture_output=True,
        check=True,
        timeout=WAIT_S,
    ).stdout.splitlines()
