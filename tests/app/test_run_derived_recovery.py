"""Derived work survives a crash: `fxconnector run` rebuilds, on start, every derived final the
store says is missing, and `fxconnector audit` fails on a store where one is missing.

Two real-process proofs. (1) Deterministic: a store holding three days of final 1m and their
coverage for two symbols but no derived bar at all, which is exactly what a kill -9 between the
1m appends and the derive of a start-up catch-up leaves. (2) A real SIGKILL during the catch-up
of an empty store, at whatever moment the 1m files first appear, then a restart.
After the restart and a clean stop, every higher-timeframe bucket of the stored range whose
minutes are all final or quiet has a derived final equal to the aggregation of its 1m, and the
audit is clean.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Final

import httpx
import numpy as np
import pytest

from fxconnector.app.main import main
from fxconnector.config.calendars import load_calendar
from fxconnector.config.loader import load_config
from fxconnector.core.builders.derive import derive
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.coverage import MinuteState, classify
from fxconnector.core.time_geom import DAY_MS, MINUTE_MS, Timeframe
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.ingest.broker.sim.broker import SimBroker
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator
from fxconnector.runtime.store.manifest import StoreIdentity, wanted
from fxconnector.runtime.store.rules import same_bar
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.app.connector import Connector

SYMBOLS: Final = ("EURUSD", "GBPUSD")
HIGHER: Final = (
    Timeframe.M5,
    Timeframe.M15,
    Timeframe.M30,
    Timeframe.H1,
    Timeframe.H4,
    Timeframe.D1,
)
CONFIG: Final = """
[calendar]
profile = "always_open"

[broker]
kind = "sim"
symbols = ["EURUSD", "GBPUSD"]
startup_lookback_mins = 4320
history_requests_per_min = 6000
history_chunk_minutes = 1440
"""
#: 3 days x 2 symbols of 5m..1d buckets, less at most the two cut by the range's ends per series.
EVERY_BUCKET: Final = 2 * 3 * (288 + 96 + 48 + 24 + 6 + 1) - 2 * 2 * len(HIGHER)
SEED: Final = 42  # [broker.sim] seed and ticks_per_minute defaults: the store holds the sim's
TICKS_PER_MINUTE: Final = 60  # own history, so the connector's answers agree with it


def calendars() -> dict[str, TradingCalendar]:
    profile = load_calendar("always_open", now_ms=time.time_ns() // 1_000_000)
    return {symbol: profile.for_symbol(symbol) for symbol in SYMBOLS}


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "connector.toml"
    path.write_text(CONFIG)
    return path


def audit_store(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, int]]:
    code = main(["audit", "--store", str(root), "--calendar", "always_open", "--json"])
    report = json.loads(capsys.readouterr().out)
    counts: dict[str, int] = report["problem_counts"]
    return code, counts


def assert_derived_complete(root: Path) -> int:
    """Every bucket inside the stored 1m range whose minutes are all final or quiet has a
    derived final equal to the aggregation of its 1m; returns how many were checked."""
    cals = calendars()
    store = JsonlStore(root)
    store.open()
    checked = 0
    try:
        for symbol in SYMBOLS:
            calendar = cals[symbol]
            minutes = [bar.event() for bar in store.bars(symbol, Timeframe.M1)]
            assert minutes, symbol
            first, end = minutes[0].open_ms, minutes[-1].open_ms + MINUTE_MS
            opens = np.fromiter((bar.open_ms for bar in minutes), np.int64, len(minutes))
            states = classify(
                first, end, calendar, opens, store.fetched_intervals(symbol, first, end)
            )
            for tf in HIGHER:
                stored = {bar.open_ms: bar for bar in store.bars(symbol, tf)}
                for bar in derive(minutes, tf, calendar):
                    lo, hi = (
                        (bar.open_ms - first) // MINUTE_MS,
                        (bar.close_ms + 1 - first) // MINUTE_MS,
                    )
                    if lo < 0 or hi > states.size or (states[lo:hi] == MinuteState.MISSING).any():
                        continue  # cut by the range, or waiting for a repair
                    held = stored.get(bar.open_ms)
                    assert held is not None, (symbol, tf, bar.open_ms)
                    assert same_bar(held, bar), (symbol, tf, bar.open_ms)
                    checked += 1
    finally:
        store.close()
    return checked


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "var"


def prepare_post_crash_store(root: Path) -> None:
    """Three days of the sim's final 1m and their coverage, no derived bar."""
    cals = calendars()
    now = time.time_ns() // 1_000_000
    end = now - now % MINUTE_MS - 10 * MINUTE_MS
    start = end - 3 * DAY_MS
    broker = SimBroker(
        TickGenerator(SEED, cals, TICKS_PER_MINUTE),
        list(SYMBOLS),
        ManualClock(now),
        BarSpec(),
        cals,
    )
    # The manifest the connector's config wants: the store is the one it wrote before the kill.
    config = load_config(write_config(root.parent.parent))
    profile = load_calendar("always_open", now_ms=now)
    settings = wanted(
        store_kind="jsonl",
        calendar="always_open",
        profile=profile,
        timeframes=config.bars.timeframes,
        price=config.bars.price,
        open_mode=config.bars.open_mode,
        volume=config.bars.volume,
        symbols=SYMBOLS,
        origin="run",
    )
    store = JsonlStore(root, identity=StoreIdentity(settings, profile))
    store.open()
    for symbol in SYMBOLS:
        store.append(asyncio.run(broker.history_1m(symbol, start, end)).bars)
        store.mark_fetched(symbol, start, end)
    store.close()


@pytest.mark.slow
def test_a_start_rebuilds_every_derived_final_lost_in_a_crash(
    tmp_path: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = workdir / "ssot"
    prepare_post_crash_store(root)
    code, counts = audit_store(root, capsys)
    assert code == 1
    assert set(counts) == {"derived.missing"}
    assert counts["derived.missing"] >= EVERY_BUCKET

    connector = Connector(workdir, "--config", str(write_config(tmp_path)))
    try:
        connector.wait_ready()
        with httpx.Client(timeout=5.0) as http:
            status = http.get(f"{connector.base}/api/status").json()
            metrics = http.get(f"{connector.base}/metrics").text
        assert "fxconnector_derived_incomplete_buckets 0.0" in metrics.splitlines()
        assert "derived_incomplete" not in status["degraded"]
        assert status["repair"]["interval_s"] == 300
        assert connector.stop() == 0
    finally:
        connector.cleanup()
    assert '"derived.recovered"' in connector.output()
    assert assert_derived_complete(root) >= EVERY_BUCKET
    assert audit_store(root, capsys) == (0, {})


@pytest.mark.slow
def test_a_kill_during_the_catch_up_loses_no_derived_final(
    tmp_path: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path))
    first = Connector(workdir, "--config", config)
    try:
        day_files = [workdir / "ssot" / symbol / "1m" for symbol in SYMBOLS]
        deadline = time.monotonic() + 60
        while not all(folder.is_dir() and any(folder.iterdir()) for folder in day_files):
            assert time.monotonic() < deadline, first.tail()
            assert first.proc.poll() is None, first.tail()
            time.sleep(0.01)
        first.kill()  # SIGKILL: no flush, no derive, an orphaned embedded Redis
    finally:
        first.cleanup()
    second = Connector(workdir, "--config", config)
    try:
        second.wait_ready()
        assert second.stop() == 0
    finally:
        second.cleanup()
    assert assert_derived_complete(workdir / "ssot") > 0
    assert audit_store(workdir / "ssot", capsys) == (0, {})
