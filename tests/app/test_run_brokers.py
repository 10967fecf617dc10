"""`fxconnector run --config FILE` against the real broker adapters (issue 7's "done when").

One connector process per broker, configured only through a TOML file and the environment:
- `fxcm`: `broker.fxcm.python` names an interpreter that has the (stand-in) ForexConnect SDK
  installed, as on a real deployment. The interpreter is a small shell wrapper around this Python
  that puts the stand-in (tests/.../fxcm/standin) on its PYTHONPATH and sets up the stand-in's
  world (its account, seed and tick rate): the adapter gives the bridge a short environment
  allowlist, so a PYTHONPATH of ours would never reach it, exactly as with the real SDK.
- `oanda`: the local v20 server (tests/.../oanda/v20_server.py) in this process, serving M1
  candles for the last hours and a pricing stream that keeps ticking, both cut from one seeded
  TickGenerator so live prices and history agree as they would at OANDA.
Credentials reach the connector only through the subprocess's environment (FXCONNECTOR_*).

Each test checks: readiness; 1m finals from `history` covering the startup lookback with the
OHLC and volume the broker served for those minutes; derived 5m and 1h bars (5m checked against
their 1m bars); live ticks reaching the surface (the status's last tick advances, broker
connected, kind named); a later minute's final fetched while running; no errors in the status;
SIGTERM exits 0 within 10 s; no secret (FXCM password and user, OANDA token) appears in the
process's output or status.
Every wait is bounded; the connector, its bridge and the v20 server are stopped in `finally`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

import fxconnector
from fxconnector.config.calendars import load_calendar
from fxconnector.core.time_geom import MINUTE_MS
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator
from tests.app.connector import Connector
from tests.runtime.ingest.broker.oanda.v20_server import ServerCandle, V20Server, rfc3339

READY_WITHIN_S = 60.0
#: A minute's final is fetched once the minute has ended plus the safety delay (2 s).
NEXT_FINAL_WITHIN_S = 80.0
LOOKBACK_MINS = 120
SYMBOLS = ("EURUSD", "USDJPY")
SRC = Path(fxconnector.__file__).resolve().parents[1]
FXCM_TESTS = Path(__file__).resolve().parents[1] / "runtime" / "ingest" / "broker" / "fxcm"
STANDIN = FXCM_TESTS / "standin"

FXCM_USER = "D161234567"
FXCM_PASSWORD = "run-S3cret-Pa55word-7f3e1c"  # noqa: S105 (the stand-in's test account)
FXCM_SEED = 11
FXCM_TICKS_PER_MINUTE = 600

OANDA_TOKEN = "v20-run-token-3b9d0f6e2a8c4e17-not-real"  # noqa: S105 - a test value
OANDA_ACCOUNT = "101-004-7654321-001"
OANDA_SEED = 23
OANDA_TICKS_PER_MINUTE = 600

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def clean_environment(**secrets: str) -> dict[str, str]:
    """This process's environment without any FXCONNECTOR_* setting, plus `secrets`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FXCONNECTOR_")}
    env.update(secrets)
    return env


def write_config(path: Path, broker: str, section: Mapping[str, str]) -> Path:
    lines = [
        "[calendar]",
        'profile = "always_open"',
        "",
        "[broker]",
        f'kind = "{broker}"',
        "symbols = [" + ", ".join(f'"{s}"' for s in SYMBOLS) + "]",
        f"startup_lookback_mins = {LOOKBACK_MINS}",
        "",
        f"[broker.{broker}]",
        *(f"{key} = {_toml_string(value)}" for key, value in section.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def floor_minute(ms: int) -> int:
    return ms - ms % MINUTE_MS


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def always_open_generator(seed: int, ticks_per_minute: int) -> TickGenerator:
    profile = load_calendar("always_open", now_ms=wall_ms())
    calendars = {symbol: profile.for_symbol(symbol) for symbol in SYMBOLS}
    return TickGenerator(seed, calendars, ticks_per_minute=ticks_per_minute)


# -- what every run must show ----------------------------------------------------------------

#: (open, high, low, close, volume) of a served 1m candle.
Served = tuple[float, float, float, float, int]


class Run:
    """Reads the running connector's HTTP surface."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.http = httpx.Client(base_url=connector.base, timeout=5.0)

    def bars(self, symbol: str, tf: str, limit: int = 1000) -> list[dict[str, Any]]:
        answer = self.http.get("/api/bars", params={"symbol": symbol, "tf": tf, "limit": limit})
        assert answer.status_code == 200, answer.text
        bars: list[dict[str, Any]] = answer.json()["bars"]
        return bars

    def status(self) -> dict[str, Any]:
        answer = self.http.get("/api/status")
        assert answer.status_code == 200, answer.text
        status: dict[str, Any] = answer.json()
        return status

    def symbol_status(self, symbol: str) -> dict[str, Any]:
        answer = self.http.get("/api/status", params={"symbol": symbol})
        assert answer.status_code == 200, answer.text
        detail: dict[str, Any] = answer.json()
        return detail

    def close(self) -> None:
        self.http.close()


def check_run(
    connector: Connector,
    *,
    kind: str,
    started_ms: int,
    served: Callable[[str, int, int], dict[int, Served]],
    secrets: tuple[str, ...],
) -> dict[str, float]:
    """The checks shared by both brokers; returns timings."""
    timings = {"ready_s": connector.wait_ready()}
    ready_ms = wall_ms()
    run = Run(connector)
    try:
        # 1m finals from the broker's history, covering the lookback, as the broker served them.
        lookback_from = floor_minute(started_ms) - LOOKBACK_MINS * MINUTE_MS
        last_seen: dict[str, int] = {}
        for symbol in SYMBOLS:
            bars = run.bars(symbol, "1m")
            assert bars, symbol
            assert all(b["complete"] and b["source"] == "history" for b in bars), bars[:3]
            assert all(b["tf"] == "1m" and b["symbol"] == symbol for b in bars)
            opens = [b["open_ms"] for b in bars]
            assert opens == sorted(set(opens))
            # The process read its clock a little after `started_ms` (same minute, or the next).
            assert lookback_from <= opens[0] <= lookback_from + MINUTE_MS, (opens[0], symbol)
            assert opens[-1] >= floor_minute(ready_ms) - 3 * MINUTE_MS, symbol
            expected = served(symbol, opens[0], opens[-1] + MINUTE_MS)
            assert len(expected) >= LOOKBACK_MINS - 5  # the broker had (nearly) every minute
            got = {
                b["open_ms"]: (b["open"], b["high"], b["low"], b["close"], b["volume"])
                for b in bars
            }
            assert got == expected, symbol
            last_seen[symbol] = opens[-1]

            # Derived bars: 5m equal to the aggregation of their 1m finals, 1h present.
            fives = run.bars(symbol, "5m")
            assert fives, symbol
            assert all(b["complete"] and b["source"] == "derived" for b in fives)
            checked = 0
            for five in fives:
                minutes = [got.get(five["open_ms"] + i * MINUTE_MS) for i in range(5)]
                if five["open_ms"] < opens[0] or any(m is None for m in minutes):
                    continue  # a bucket the lookback cut, or with a quiet minute
                parts = [m for m in minutes if m is not None]
                assert five["open"] == parts[0][0]
                assert five["high"] == max(p[1] for p in parts)
                assert five["low"] == min(p[2] for p in parts)
                assert five["close"] == parts[-1][3]
                assert five["volume"] == sum(p[4] for p in parts)
                checked += 1
            assert checked >= LOOKBACK_MINS // 5 - 3, (symbol, checked)
            hours = run.bars(symbol, "1h")
            assert hours, symbol
            assert all(b["complete"] and b["source"] == "derived" for b in hours)
            assert hours[-1]["open_ms"] >= floor_minute(started_ms) - 2 * 60 * MINUTE_MS

        # Live ticks reach the surface: the last tick time advances while connected.
        first = run.status()
        assert first["broker"]["kind"] == kind
        deadline = time.monotonic() + 15.0
        while True:
            time.sleep(1.0)
            later = run.status()
            before, after = first["broker"]["last_tick_ts_ms"], later["broker"]["last_tick_ts_ms"]
            if before is not None and after is not None and after > before:
                break
            assert time.monotonic() < deadline, (first["broker"], later["broker"])
            if before is None:
                first = later  # the status before the first tick: advance from the first one
        assert later["broker"]["state"] == "connected", later["broker"]
        assert later["broker"]["kind"] == kind
        assert abs(wall_ms() - later["broker"]["last_tick_ts_ms"]) < 15_000
        assert later["surface"]["state"] == "ok"
        assert later["ssot"]["state"] == "ok"

        # The per-minute fast path keeps going: a later minute's final, as served.
        waited = time.monotonic()
        deadline = waited + NEXT_FINAL_WITHIN_S
        for symbol in SYMBOLS:
            while True:
                newest = run.bars(symbol, "1m", limit=5)
                if newest and newest[-1]["open_ms"] > last_seen[symbol]:
                    break
                assert time.monotonic() < deadline, (symbol, last_seen, connector.tail())
                time.sleep(1.0)
            fresh = [b for b in newest if b["open_ms"] > last_seen[symbol]]
            expected = served(symbol, fresh[0]["open_ms"], fresh[-1]["open_ms"] + MINUTE_MS)
            assert {
                b["open_ms"]: (b["open"], b["high"], b["low"], b["close"], b["volume"])
                for b in fresh
            } == expected
            assert all(b["source"] == "history" and b["complete"] for b in fresh)
        timings["next_final_s"] = time.monotonic() - waited

        final = run.status()
        assert final["broker"]["state"] == "connected", final["broker"]
        assert final["errors"] == [], final["errors"]
        # The status counts coverage over the last 24 hours; a 120-minute lookback leaves the
        # rest of that day missing, which is all it may call degraded.
        assert final["degraded"] in ([], ["ssot_missing_minutes"]), final["degraded"]
        assert final["symbols"]["total"] == len(SYMBOLS)
        for symbol in SYMBOLS:
            coverage = run.symbol_status(symbol)["coverage"]
            assert coverage["final"] >= LOOKBACK_MINS - 5, coverage
            assert coverage["missing"] <= 24 * 60 - LOOKBACK_MINS + 5, coverage
        status_text = run.http.get("/api/status").text
        metrics_text = run.http.get("/metrics").text
        for secret in secrets:
            assert secret not in status_text
            assert secret not in metrics_text
    finally:
        run.close()
    code = connector.stop()
    took = connector.stop_seconds
    timings["stop_s"] = took
    assert code == 0, connector.tail()
    output = connector.output()
    assert "connector.stopped" in output
    for secret in secrets:
        assert secret not in output
    return timings


# -- fxcm against the stand-in SDK -----------------------------------------------------------


def _load_standin_world() -> ModuleType:
    """The stand-in's `_world` module alone (its candles are what the bridge is served)."""
    spec = importlib.util.spec_from_file_location(
        "fxcm_standin_world", STANDIN / "forexconnect" / "_world.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def standin_interpreter(
    tmp_path: Path, faults: Mapping[str, Any] | None = None
) -> tuple[Path, dict[str, str]]:
    """A Python with the stand-in SDK installed (a wrapper), and the stand-in world it serves."""
    world = {
        "FXCM_STANDIN_USER": FXCM_USER,
        "FXCM_STANDIN_PASSWORD": FXCM_PASSWORD,
        "FXCM_STANDIN_SEED": str(FXCM_SEED),
        "FXCM_STANDIN_TICKS_PER_MINUTE": str(FXCM_TICKS_PER_MINUTE),
        "FXCM_STANDIN_FAULTS": json.dumps(dict(faults or {})),
    }
    settings = {"PYTHONPATH": os.pathsep.join((str(SRC), str(STANDIN))), **world}
    wrapper = tmp_path / "python-with-forexconnect"
    wrapper.write_text(
        "#!/bin/sh\n"
        + "".join(f"export {name}={shlex.quote(value)}\n" for name, value in settings.items())
        + f'exec {shlex.quote(sys.executable)} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper, world


def test_fxcm_run_against_the_standin_sdk(tmp_path: Path) -> None:
    python, world_env = standin_interpreter(tmp_path)
    world = _load_standin_world().World(world_env)

    def served(symbol: str, from_ms: int, to_ms: int) -> dict[int, Served]:
        instrument = f"{symbol[:3]}/{symbol[3:]}"
        candles = world.candles(instrument, from_ms, to_ms - MINUTE_MS, to_ms, False)
        # bars.price = bid: the bid columns; FXCM's Volume is the tick count
        return {c[0]: (c[1], c[2], c[3], c[4], c[9]) for c in candles}

    config = write_config(
        tmp_path / "fxcm.toml",
        "fxcm",
        {"python": str(python), "connection": "Demo", "url": "http://standin.invalid/Hosts.jsp"},
    )
    env = clean_environment(
        FXCONNECTOR_FXCM_USER=FXCM_USER, FXCONNECTOR_FXCM_PASSWORD=FXCM_PASSWORD
    )
    started_ms = wall_ms()
    connector = Connector(
        tmp_path / "var", "--config", str(config), env=env, ready_within_s=READY_WITHIN_S
    )
    try:
        timings = check_run(
            connector,
            kind="fxcm",
            started_ms=started_ms,
            served=served,
            secrets=(FXCM_PASSWORD, FXCM_USER),
        )
    finally:
        connector.cleanup()
    assert FXCM_PASSWORD not in config.read_text()
    assert (tmp_path / "var" / "fxcm").is_dir()  # the bridge ran in the workdir
    print(f"\nfxcm: {timings}")


def test_fxcm_failed_logins_are_in_the_status_errors(tmp_path: Path) -> None:
    python, _world = standin_interpreter(tmp_path, faults={"login_failures": 2})
    config = write_config(
        tmp_path / "fxcm.toml",
        "fxcm",
        {"python": str(python), "connection": "Demo", "url": "http://standin.invalid/Hosts.jsp"},
    )
    env = clean_environment(
        FXCONNECTOR_FXCM_USER=FXCM_USER, FXCONNECTOR_FXCM_PASSWORD=FXCM_PASSWORD
    )
    connector = Connector(
        tmp_path / "var", "--config", str(config), env=env, ready_within_s=READY_WITHIN_S
    )
    try:
        connector.wait_ready()  # the third login works
        with httpx.Client(timeout=5.0) as http:
            status = http.get(f"{connector.base}/api/status").json()
        logins = [e for e in status["errors"] if "LOGIN_RETRY" in e["message"]]
        assert len(logins) == 2, status["errors"]
        assert {e["code"] for e in logins} == {"broker.disconnected"}
        assert FXCM_PASSWORD not in str(status)
        assert status["broker"]["state"] == "connected"
    finally:
        assert connector.stop() == 0, connector.tail()


# -- oanda against the local v20 server ------------------------------------------------------


class V20Feed:
    """Candles and a live pricing stream for the v20 server, from one seeded generator."""

    def __init__(self, server: V20Server, seed: int, ticks_per_minute: int) -> None:
        self.server = server
        # A TickGenerator is not for several threads: the history's and the stream's own.
        self.generator = always_open_generator(seed, ticks_per_minute)
        self._live = always_open_generator(seed, ticks_per_minute)
        self._served: dict[str, list[ServerCandle]] = {}
        self._stop = threading.Event()
        #: While set the stream sends no price (heartbeats go on): a silent broker.
        self.silent = threading.Event()
        self._thread = threading.Thread(target=self._stream, name="v20-feed", daemon=True)
        self.sent = 0

    @staticmethod
    def instrument(symbol: str) -> str:
        return f"{symbol[:3]}_{symbol[3:]}"

    def _text(self, symbol: str, price: float) -> str:
        return f"{price:.{self.generator.profile(symbol).digits}f}"

    def candles(self, symbol: str, from_ms: int, to_ms: int) -> list[ServerCandle]:
        """OANDA's M1 candles of the generator's ticks (a minute without ticks has none)."""
        out = []
        for minute in range(from_ms, to_ms, MINUTE_MS):
            batch = self.generator.minute(symbol, minute)
            if not len(batch):
                continue
            bid = [self._text(symbol, p) for p in (batch.bid[0], batch.bid.max())]
            bid += [self._text(symbol, p) for p in (batch.bid.min(), batch.bid[-1])]
            ask = [self._text(symbol, p) for p in (batch.ask[0], batch.ask.max())]
            ask += [self._text(symbol, p) for p in (batch.ask.min(), batch.ask[-1])]
            mids = (batch.bid + batch.ask) / 2
            mid = [f"{p:.6f}" for p in (mids[0], mids.max(), mids.min(), mids[-1])]
            out.append(
                ServerCandle(
                    open_ms=minute,
                    volume=len(batch),
                    complete=True,
                    bid=(bid[0], bid[1], bid[2], bid[3]),
                    ask=(ask[0], ask[1], ask[2], ask[3]),
                    mid=(mid[0], mid[1], mid[2], mid[3]),
                )
            )
        return out

    def served(self, symbol: str, from_ms: int, to_ms: int) -> dict[int, Served]:
        """What the server answers for [from_ms, to_ms) with price=B, as numbers."""
        return {
            c.open_ms: (
                float(c.bid[0]),
                float(c.bid[1]),
                float(c.bid[2]),
                float(c.bid[3]),
                c.volume,
            )
            for c in self._served[symbol]
            if from_ms <= c.open_ms < to_ms
        }

    def start(self, from_ms: int, to_ms: int) -> None:
        """Candles for [from_ms, to_ms), and the stream feeder (live from now on)."""
        for symbol in SYMBOLS:
            self._served[symbol] = self.candles(symbol, from_ms, to_ms)
            self.server.set_candles(self.instrument(symbol), self._served[symbol])
        self.server.heartbeat_s = 5.0  # OANDA's HEARTBEAT period
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
            assert not self._thread.is_alive(), "the v20 feed did not stop"

    def _stream(self) -> None:
        """Every 100 ms, the generator's ticks since the last send, as v20 PRICE lines."""
        after_ms = wall_ms()
        while not self._stop.wait(0.1):
            if not self.server.requests_of("stream") or self.silent.is_set():
                after_ms = wall_ms()  # nothing connected yet, or silent: those ticks never come
                continue
            upto_ms = wall_ms()
            rows: list[tuple[int, str, float, float]] = []
            for symbol in SYMBOLS:
                batch = self._live.between(symbol, after_ms + 1, upto_ms + 1)
                rows.extend(
                    (int(t), symbol, float(b), float(a))
                    for t, b, a in zip(batch.ts_ms, batch.bid, batch.ask, strict=True)
                )
            rows.sort(key=lambda row: row[0])
            self.server.send(*(self._price(*row) for row in rows))
            self.sent += len(rows)
            after_ms = upto_ms

    def _price(self, ts_ms: int, symbol: str, bid: float, ask: float) -> dict[str, Any]:
        bid_text, ask_text = self._text(symbol, bid), self._text(symbol, ask)
        return {
            "type": "PRICE",
            "time": rfc3339(ts_ms),
            "bids": [{"price": bid_text, "liquidity": 1000000}],
            "asks": [{"price": ask_text, "liquidity": 1000000}],
            "closeoutBid": bid_text,
            "closeoutAsk": ask_text,
            "status": "tradeable",
            "tradeable": True,
            "instrument": self.instrument(symbol),
        }


@pytest.fixture
def v20() -> Iterator[V20Server]:
    with V20Server(token=OANDA_TOKEN, account_id=OANDA_ACCOUNT) as server:
        yield server


def test_oanda_run_against_the_local_v20_server(tmp_path: Path, v20: V20Server) -> None:
    feed = V20Feed(v20, OANDA_SEED, OANDA_TICKS_PER_MINUTE)
    now = floor_minute(wall_ms())
    # The last hours, and the minutes this run will live through (asked for once they end).
    feed.start(now - 3 * 60 * MINUTE_MS, now + 15 * MINUTE_MS)
    config = write_config(
        tmp_path / "oanda.toml",
        "oanda",
        {
            "rest_url": v20.url,
            "stream_url": v20.url,
            "account_id": OANDA_ACCOUNT,
            "price": "B",
        },
    )
    env = clean_environment(FXCONNECTOR_OANDA_TOKEN=OANDA_TOKEN)
    started_ms = wall_ms()
    connector = Connector(
        tmp_path / "var", "--config", str(config), env=env, ready_within_s=READY_WITHIN_S
    )
    try:
        timings = check_run(
            connector,
            kind="oanda",
            started_ms=started_ms,
            served=feed.served,
            secrets=(OANDA_TOKEN,),
        )
    finally:
        connector.cleanup()
        feed.stop()
    assert OANDA_TOKEN not in config.read_text()
    assert feed.sent > 0
    requests = v20.requests
    assert requests
    assert all(r.authorization == f"Bearer {OANDA_TOKEN}" for r in requests)
    streams = v20.requests_of("stream")
    assert streams[0].query["instruments"] == "EUR_USD,USD_JPY"
    assert len(streams) == 1  # one stream all run long: never stale, never reconnected
    candles = v20.requests_of("candles")
    assert {r.path for r in candles} == {
        "/v3/instruments/EUR_USD/candles",
        "/v3/instruments/USD_JPY/candles",
    }
    assert all(r.query["granularity"] == "M1" and r.query["price"] == "B" for r in candles)
    print(f"\noanda: {timings}")
