"""Two `fxconnector run` processes sharing one Redis namespace (issue 12): each has its own
status key and its symbols' details; neither overwrites the other's; `NS:status` (the
single-process key) is not one of them; each API lists both."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from fxconnector.runtime.publish.keys import SurfaceKeys
from tests.app.connector import Connector
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.redis]

SEEN_WITHIN_S = 20.0


def launch(root: Path, name: str, symbol: str, redis_url: str) -> Connector:
    config = root / f"{name}.toml"
    config.write_text(
        f'[broker]\nkind = "sim"\nsymbols = ["{symbol}"]\nstartup_lookback_mins = 5\n'
    )
    return Connector(root / name, "--config", str(config), "--redis-url", redis_url)


def test_two_processes_in_one_namespace_keep_their_own_status(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    keys = SurfaceKeys()
    first = launch(tmp_path, "a", "EURUSD", redis_server.url)
    second = launch(tmp_path, "b", "GBPUSD", redis_server.url)
    try:
        first.wait_ready()
        second.wait_ready()
        with httpx.Client(timeout=5.0) as http, redis_server.client() as r:
            ids = {
                c.proc.pid: http.get(f"{c.base}/api/status").json()["process"]["id"]
                for c in (first, second)
            }
            assert len(set(ids.values())) == 2
            assert all(process.endswith(f":{pid}") for pid, process in ids.items())
            deadline = time.monotonic() + SEEN_WITHIN_S
            while True:
                listed = http.get(f"{first.base}/api/status/processes").json()["processes"]
                if len(listed) == 2 and r.get(keys.status) is None:
                    break
                assert time.monotonic() < deadline, (listed, r.get(keys.status))
                time.sleep(0.5)
            assert {p["process"]["id"] for p in listed} == set(ids.values())
            other = http.get(f"{second.base}/api/status/processes").json()["processes"]
            assert {p["process"]["id"] for p in other} == set(ids.values())
            for connector, symbol in ((first, "EURUSD"), (second, "GBPUSD")):
                process = ids[connector.proc.pid]
                own = json.loads(r.get(keys.status_process(process)) or b"null")
                assert own["process"]["id"] == process
                assert own["symbols"]["total"] == 1
                detail = json.loads(r.get(keys.status_symbol(symbol)) or b"null")
                assert detail["process_id"] == process
                assert http.get(f"{connector.base}/api/status?symbol={symbol}").status_code == 200
            # A shared namespace: each API serves the other's symbol too, with its owner's detail
            # (read from Redis, written by the owning process).
            foreign = http.get(f"{first.base}/api/status?symbol=GBPUSD")
            assert foreign.status_code == 200, foreign.text
            assert foreign.json()["process_id"] == ids[second.proc.pid]
        assert second.stop() == 0
        # Alone again once the other's entry is older than the expiry: NS:status is back.
        with redis_server.client() as r:
            deadline = time.monotonic() + SEEN_WITHIN_S
            while r.get(keys.status) is None:
                assert time.monotonic() < deadline
                time.sleep(0.5)
            alone = json.loads(r.get(keys.status) or b"null")
            assert alone["process"]["id"] == ids[first.proc.pid]
        assert first.stop() == 0
    finally:
        first.cleanup()
        second.cleanup()
