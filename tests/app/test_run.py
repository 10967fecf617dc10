"""`fxconnector run` as a real process: ready quickly, serves bars, stops cleanly, loses nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
import redis

from fxconnector.client.consumer import SurfaceConsumer
from fxconnector.config.calendars import load_calendar
from fxconnector.config.loader import load_config
from fxconnector.core.builders.spec import BarSpec, OpenMode, PriceSide, VolumeMode
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.ingest.broker.sim.broker import SimBroker
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.app.connector import Connector
from tests.redis_server import RedisServer


@pytest.fixture
def connector(tmp_path: Path) -> Iterator[Connector]:
    running = Connector(tmp_path / "var")
    try:
        yield running
    finally:
        running.cleanup()  # SIGTERM first: a SIGKILL would orphan the embedded Redis


@pytest.mark.slow
def test_demo_runs_serves_and_stops_cleanly(connector: Connector) -> None:
    took = connector.wait_ready()
    announced = connector.announced()
    assert f"open http://127.0.0.1:{connector.port}/" in announced
    with httpx.Client(timeout=5.0) as http:
        bars = http.get(
            f"{connector.base}/api/bars", params={"symbol": "EURUSD", "tf": "1m", "limit": 1000}
        ).json()
        assert len(bars["bars"]) == 1000  # three days of sim history were fetched at start
        assert all(b["complete"] and b["source"] == "history" for b in bars["bars"])
        assert bars["cursor"]
        hours = http.get(
            f"{connector.base}/api/bars", params={"symbol": "USDJPY", "tf": "1h", "limit": 50}
        ).json()["bars"]
        assert len(hours) == 50
        assert all(b["source"] == "derived" for b in hours)
        status = http.get(f"{connector.base}/api/status").json()
        assert status["broker"]["kind"] == "sim"
        # The history plan: 3 symbols every minute, 2 s delay + (3 + 1) calls of 1 s.
        assert status["broker"]["final_lag_bound_s"] == 6
        assert status["surface"]["state"] == "ok"
        metrics = http.get(f"{connector.base}/metrics").text
        assert "fxconnector_finals_total" in metrics
    # Keyspace: exactly the documented keys in the embedded Redis.
    keys = SurfaceKeys()
    with redis.Redis(unix_socket_path=str(connector.workdir / "redis" / "redis.sock")) as r:
        found = {k.decode() for k in r.scan_iter("*")}
    snaps = {k for k in found if k.startswith("fxconnector:ohlcv:snap:")}
    statuses = {
        k for k in found if k.startswith(("fxconnector:status:proc:", "fxconnector:status:sym:"))
    }
    smc = {k for k in found if k.startswith("fxconnector:smc:")}  # the demo runs SMC
    assert smc >= {keys.smc_events, keys.smc_snapshot("EURUSD", Timeframe.M1)}
    assert found - snaps - statuses - smc <= set(keys.all_fixed())
    assert {k.split(":")[3] for k in statuses if ":sym:" in k} == {"EURUSD", "GBPUSD", "USDJPY"}
    assert keys.events in found
    assert keys.status in found
    assert {k.split(":")[3] for k in snaps} == {"EURUSD", "GBPUSD", "USDJPY"}
    assert not any("command" in k for k in found)
    assert connector.stop() == 0
    plans = [
        json.loads(line)
        for line in connector.log_path.read_text().splitlines()
        if '"history.plan"' in line
    ]
    assert len(plans) == 1
    assert plans[0]["final_lag_bound_s"] == 6
    assert "3 symbols, 6000 history requests/min" in plans[0]["detail"]
    # The SSOT is intact: opens cleanly (no torn tail) with every final readable.
    store = JsonlStore(connector.workdir / "ssot")
    report = store.open()
    assert report.torn_tails == []
    try:
        for symbol in ("EURUSD", "GBPUSD", "USDJPY"):
            assert_no_minute_lost(store, symbol, connector.launched_ms)
    finally:
        store.close()
    print(f"\nready after {took:.1f} s")


def assert_no_minute_lost(store: JsonlStore, symbol: str, launched_ms: int) -> None:
    """Over the history the connector fetched, the store holds exactly what the sim had.

    The sim's own history is the generator's ticks (a pure function of seed, symbol and minute):
    every minute with ticks must be stored as final, exactly the aggregation of those ticks, and
    every minute without one (quiet) must have no bar. No tolerance: which minutes are quiet
    depends on the day the test runs, and each is checked against the source.
    """
    config = load_config(profile="demo")
    fetched = store.fetched_intervals(symbol, 0, 2**62)
    assert len(fetched) == 1, fetched  # one span, no hole in what was fetched
    from_ms, to_ms = fetched[0]
    lookback_ms = config.broker.startup_lookback_mins * MINUTE_MS
    # The span starts where the lookback does (the process read its clock after launch) and
    # reaches at least the minute before launch (startup catch-up ends before ready).
    lookback_from = launched_ms - lookback_ms
    assert lookback_from - lookback_from % MINUTE_MS <= from_ms, (launched_ms, from_ms)
    assert to_ms >= launched_ms - launched_ms % MINUTE_MS - MINUTE_MS, (launched_ms, to_ms)
    profile = load_calendar(config.calendar.profile, now_ms=launched_ms)
    calendars = {s: profile.for_symbol(s) for s in config.broker.symbols}
    generator = TickGenerator(config.broker.sim.seed, calendars, config.broker.sim.ticks_per_minute)
    spec = BarSpec(
        PriceSide(config.bars.price),
        OpenMode(config.bars.open_mode),
        VolumeMode(config.bars.volume),
    )
    sim = SimBroker(generator, config.broker.symbols, ManualClock(to_ms), spec, calendars)
    had = asyncio.run(sim.history_1m(symbol, from_ms, to_ms)).bars
    stored = [bar.event() for bar in store.bars(symbol, Timeframe.M1, from_ms, to_ms)]
    ticked = {
        minute
        for minute in range(-(-from_ms // MINUTE_MS) * MINUTE_MS, to_ms, MINUTE_MS)
        if len(generator.minute(symbol, minute))
    }
    assert {bar.open_ms for bar in had} == ticked  # the sim's history: its minutes with ticks
    assert [bar.open_ms for bar in stored] == [bar.open_ms for bar in had], symbol
    assert stored == [msgspec.structs.replace(bar, rev=0) for bar in had], symbol


@pytest.mark.slow
def test_redis_restart_mid_run_loses_no_final(tmp_path: Path, redis_server: RedisServer) -> None:
    running = Connector(tmp_path / "var", "--redis-url", redis_server.url)
    try:
        running.wait_ready()
        time.sleep(1.0)
        redis_server.restart()  # everything in Redis is gone
        with httpx.Client(timeout=5.0) as http:
            # Noticed (the outage is in status errors[], once, after it is over too) and over.
            deadline = time.monotonic() + 20
            while True:
                errors = http.get(f"{running.base}/api/status").json()["errors"]
                noticed = [e["code"] for e in errors].count("redis.unavailable")
                ready = http.get(f"{running.base}/api/health/ready").status_code == 200
                if noticed and ready:
                    break
                assert time.monotonic() < deadline, running.tail()
                time.sleep(0.2)
            assert noticed == 1, errors
        finals = asyncio.run(_consume(redis_server))
    finally:
        assert running.stop() == 0
    store = JsonlStore(tmp_path / "var" / "ssot")
    store.open()
    for (symbol, tf), bars in finals.items():
        assert len(bars) >= 50, (symbol, tf)
        first, last = bars[0].open_ms, bars[-1].open_ms
        # Over the span the client holds, it has exactly the SSOT's finals: no gap, no
        # duplicate, the latest revision of each.
        expected = [b.event() for b in store.bars(symbol, tf, first, last + 1)]
        assert bars == expected, (symbol, tf)
    store.close()


async def _consume(server: RedisServer) -> dict[tuple[str, Timeframe], list[OhlcvEvent]]:
    client = redis.asyncio.Redis(host="127.0.0.1", port=server.port)
    try:
        series = [(s, tf) for s in ("EURUSD", "USDJPY") for tf in (Timeframe.M1, Timeframe.H1)]
        consumer = SurfaceConsumer(client, SurfaceKeys(), series)
        await asyncio.wait_for(consumer.bootstrap(), timeout=10)
        await asyncio.wait_for(consumer.poll(block_ms=100, count=10_000), timeout=10)
        return {key: consumer.book.finals(*key) for key in series}
    finally:
        await client.aclose()


@pytest.mark.slow
def test_restart_after_kill_minus_9_takes_over_and_serves(tmp_path: Path) -> None:
    first = Connector(tmp_path / "var")
    first.wait_ready()
    first.kill()  # no cleanup at all: the embedded Redis is orphaned
    second = Connector(tmp_path / "var")
    try:
        second.wait_ready()  # the orphan Redis is shut down and a fresh one started
        with httpx.Client(timeout=5.0) as http:
            bars = http.get(
                f"{second.base}/api/bars", params={"symbol": "GBPUSD", "tf": "1m", "limit": 10}
            ).json()
        assert len(bars["bars"]) == 10
    finally:
        assert second.stop() == 0
    sock = tmp_path / "var" / "redis" / "redis.sock"
    assert not sock.exists()  # nothing left behind by either run
    store = JsonlStore(tmp_path / "var" / "ssot")
    store.open()
    store.close()
