"""`fxconnector run` (the demo, SMC on) against `fxconnector smc --store`: batch == live.

The live SMC consumer of a real connector publishes the hints of its SSOT's series; the store
run over the same store prints the same hints, byte for byte, up to where the consumer stands.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.smc.state import SmcState, decode_state
from tests.app.connector import Connector

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
        store = subprocess.run(
            [
                sys.executable,
                "-m",
                "fxconnector.app.main",
                "smc",
                "--store",
                str(connector.workdir / "ssot"),
                "--symbol",
                symbol,
                "--tf",
                tf.value,
                "--to",
                str(state.last_open_ms + tf.ms),
            ],
            capture_output=True,
            check=True,
            timeout=WAIT_S,
        ).stdout.splitlines()
        assert len(store) > 10, (symbol, tf)
        assert live[: len(store)] == store, (symbol, tf)  # what the consumer stood at
        assert len(set(live)) == len(live)  # no hint twice
