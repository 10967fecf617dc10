"""Outages under `fxconnector run` (issue 11 p7): Redis killed and restarted empty.

Redis is down for OUTAGE_S (FXCONNECTOR_REDIS_OUTAGE_S, default 6 s, not the issue's 60 s): the
surface's behaviour does not depend on how long it is down (its reconnect backoff is capped at a
few seconds and the backlog is bounded by count, not time), so the pressure of a long outage is
made by what happens during it instead: a `warmup` command publishes a day of finals per symbol
while Redis is gone, far more than a real minute's worth in 60 s. Status is read every half
second of the outage and must say degraded each time. After the restart the surface must end
with exactly the store's finals, compared key by key (every snapshot equals the store's newest
finals of its series; every final event in the new stream equals the store's bar or an older
revision of it).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from fxconnector.app.main import main
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils import json_codec
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.app.connector import Connector
from tests.redis_server import RedisServer

OUTAGE_S = float(os.environ.get("FXCONNECTOR_REDIS_OUTAGE_S", "6"))
SYMBOLS = ("EURUSD", "USDJPY")
SNAPSHOT_BARS = 500


def _status(http: httpx.Client, base: str) -> dict[str, Any]:
    answer: dict[str, Any] = http.get(f"{base}/api/status").json()
    return answer


def _surface_reasons(status: dict[str, Any]) -> list[str]:
    return [str(reason) for reason in status["degraded"] if str(reason).startswith("surface_")]


def _until(what: str, check: Callable[[], bool], within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.timeout(300)
def test_redis_down_then_back_empty_ends_with_the_stores_finals(
    tmp_path: Path, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[calendar]\nprofile = "always_open"\n'
        f'[broker]\nkind = "sim"\nsymbols = {json.dumps(list(SYMBOLS))}\n'
        "startup_lookback_mins = 60\nhistory_requests_per_min = 100000\n"
        f"[surface]\nsnapshot_bars = {SNAPSHOT_BARS}\n"
    )
    workdir = tmp_path / "var"
    running = Connector(workdir, "--config", str(config), "--redis-url", redis_server.url)
    degraded_reads: list[list[str]] = []
    try:
        running.wait_ready()
        with httpx.Client(timeout=5.0) as http:
            redis_server.kill()
            down_at = time.monotonic()
            # While Redis is down a day of history per symbol is fetched and published.
            warmup_argv = ["cmd", "warmup", "--workdir", str(workdir), "--config", str(config)]
            code = main(
                [*warmup_argv, "--symbols", ",".join(SYMBOLS), "--lookback-mins", "1440", "--json"]
            )
            warmup = capsys.readouterr().out
            assert code == 0, warmup
            while time.monotonic() - down_at < OUTAGE_S:
                degraded_reads.append(_surface_reasons(_status(http, running.base)))
                time.sleep(0.5)
            redis_server.start()  # empty: no persistence
            _until(
                "the surface recovered", lambda: not _surface_reasons(_status(http, running.base))
            )
            _until(
                "the backlog drained",
                lambda: _status(http, running.base)["surface"] == {"state": "ok", "backlog": 0},
            )
    finally:
        assert running.stop() == 0
    assert degraded_reads
    assert all(degraded_reads), degraded_reads  # every read during the outage: degraded
    compared = _compare_surface_with_store(redis_server, workdir / "ssot")
    with capsys.disabled():
        print(
            f"\nredis outage: {OUTAGE_S:g} s down, {len(degraded_reads)} status reads all "
            f"degraded ({sorted({r for reads in degraded_reads for r in reads})}), "
            f"{compared} finals compared key by key, 0 differences"
        )


def _compare_surface_with_store(server: RedisServer, root: Path) -> int:
    keys = SurfaceKeys()
    store = JsonlStore(root)
    store.open()
    compared = 0
    try:
        with redis.Redis(host="127.0.0.1", port=server.port) as client:
            for symbol, tf in store.series():
                raw = client.hget(keys.snapshot(symbol, tf), "bars")
                assert raw is not None, (symbol, tf)
                snapshot = json_codec.decode(raw, list[OhlcvEvent])
                expected = [bar.event() for bar in store.bars(symbol, tf)][-SNAPSHOT_BARS:]
                assert snapshot == expected, (symbol, tf)
                compared += len(snapshot)
            for _, fields in client.xrange(keys.events):
                event = json_codec.decode(fields[b"event"], OhlcvEvent)
                if not event.complete:
                    continue
                stored = store.latest(event.symbol, event.tf, event.open_ms)
                assert stored is not None, event
                assert stored.rev >= event.rev
                if stored.rev == event.rev:
                    assert stored.event() == event
                compared += 1
    finally:
        store.close()
    assert {tf for _, tf in store_series(root)} >= {Timeframe.M1, Timeframe.H1}
    return compared


def store_series(root: Path) -> list[tuple[str, Timeframe]]:
    store = JsonlStore(root)
    store.open()
    try:
        return store.series()
    finally:
        store.close()
