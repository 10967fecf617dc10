"""`fxconnector run`'s exit codes and its stop, as a real process (issue 10, points 6, 7, 11).

The contract (README "Exit codes", `fxconnector run --help`): 0 a clean stop on SIGINT/SIGTERM,
1 a runtime failure, 2 bad usage or config. A failure ends the process by itself with one line
on stderr naming what to fix (the JSON log lines before it are the detail), no Python traceback,
and nothing left behind (no control socket, no embedded Redis).
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from fxconnector.app.main import main
from fxconnector.core.time_geom import MINUTE_MS
from fxconnector.runtime.ingest.commands.control import SOCKET_NAME
from tests.app.connector import Connector
from tests.app.test_run_brokers import (
    LOOKBACK_MINS,
    OANDA_ACCOUNT,
    OANDA_SEED,
    OANDA_TICKS_PER_MINUTE,
    OANDA_TOKEN,
    V20Feed,
    clean_environment,
    floor_minute,
    wall_ms,
    write_config,
)
from tests.runtime.ingest.broker.oanda.v20_server import V20Server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

STREAM_CLIENTS = 50


def plain_lines(stderr: list[str]) -> list[str]:
    """The stderr lines that are not JSON log lines."""
    out = []
    for line in stderr:
        try:
            json.loads(line)
        except ValueError:
            out.append(line)
    return out


def assert_one_line_failure(code: int, stderr: list[str], expected_code: int, *needles: str) -> str:
    assert code == expected_code, "\n".join(stderr[-20:])
    plain = plain_lines(stderr)
    assert len(plain) == 1, plain  # one line for the operator, no traceback
    assert not any("Traceback" in line for line in stderr)
    kind = "error" if expected_code == 2 else "failed"
    assert plain[0].startswith(f"fxconnector run: {kind}: "), plain[0]
    for needle in needles:
        assert needle in plain[0], plain[0]
    return plain[0]


def assert_nothing_left(workdir: Path) -> None:
    assert not (workdir / SOCKET_NAME).exists()
    assert not (workdir / "redis" / "redis.sock").exists()


# -- 2: bad usage or config, caught when the config is loaded ----------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--workdir", "FILE", "not a folder"),
        ("--redis-url", "redis://[::1", "surface.redis_url is not a valid URL"),
        ("--redis-url", "redis://127.0.0.1:9/0?foo=1", "unknown option 'foo'"),
        ("--http", "nosuchhost.invalid:8080", "cannot resolve host 'nosuchhost.invalid'"),
        ("--http", "127.0.0.1:0", "port must be 1..65535"),
    ],
)
def test_bad_config_is_exit_2_with_one_line(
    tmp_path: Path, flag: str, value: str, needle: str
) -> None:
    if value == "FILE":
        value = str(tmp_path / "a-file")
        Path(value).write_text("not a folder\n")
    connector = Connector(tmp_path / "var", flag, value)
    code, stderr = connector.wait_exit()
    assert_one_line_failure(code, stderr, 2, needle)
    assert_nothing_left(tmp_path / "var")


# -- 1: runtime failures --------------------------------------------------------------------------


def test_http_port_taken_is_exit_1_and_leaves_nothing(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        connector = Connector(tmp_path / "var", "--http", f"127.0.0.1:{port}")
        code, stderr = connector.wait_exit()
    assert_one_line_failure(code, stderr, 1, f"127.0.0.1:{port}", "Address already in use")
    assert_nothing_left(tmp_path / "var")


@pytest.fixture
def v20() -> Iterator[V20Server]:
    with V20Server(token=OANDA_TOKEN, account_id=OANDA_ACCOUNT) as server:
        yield server


def test_oanda_401_after_start_is_exit_1_naming_the_token_setting(
    tmp_path: Path, v20: V20Server
) -> None:
    feed = V20Feed(v20, OANDA_SEED, OANDA_TICKS_PER_MINUTE)
    now = floor_minute(wall_ms())
    feed.start(now - LOOKBACK_MINS * MINUTE_MS, now + 10 * MINUTE_MS)
    config = write_config(
        tmp_path / "oanda.toml",
        "oanda",
        {"rest_url": v20.url, "stream_url": v20.url, "account_id": OANDA_ACCOUNT, "price": "B"},
    )
    env = clean_environment(FXCONNECTOR_OANDA_TOKEN=OANDA_TOKEN)
    connector = Connector(tmp_path / "var", "--config", str(config), env=env, ready_within_s=60)
    try:
        connector.wait_ready()
        v20.token = "revoked-" + OANDA_TOKEN  # the token is revoked while the connector runs
        v20.abort_stream()  # the stream breaks; connecting again is refused with a 401
        code, stderr = connector.wait_exit()
    finally:
        connector.cleanup()
        feed.stop()
    line = assert_one_line_failure(code, stderr, 1, "401", "FXCONNECTOR_OANDA_TOKEN")
    assert OANDA_TOKEN not in "\n".join(stderr)
    assert "connector.stopped" in stderr[-2]
    print(f"\n{line}")
    assert_nothing_left(tmp_path / "var")


# -- 0: a clean stop on a signal, with stream clients attached --------------------------------


def test_sigint_with_50_stream_clients_ends_every_stream_cleanly(tmp_path: Path) -> None:
    connector = Connector(tmp_path / "var")
    sse_endings: list[str] = []
    ws_codes: list[int | None] = []
    failures: list[str] = []
    attached = threading.Barrier(STREAM_CLIENTS + 1, timeout=30)

    def sse_client() -> None:
        try:
            with (
                httpx.Client(timeout=30) as http,
                http.stream("GET", f"{connector.base}/api/stream") as answer,
            ):
                lines = answer.iter_lines()
                assert next(lines).startswith("retry:")  # the stream is open
                attached.wait()
                last = ""
                for line in lines:  # raises on a body cut short: only a clean end passes
                    last = line or last
                sse_endings.append(last)
        except Exception as exc:  # reported by the test thread
            failures.append(f"sse: {exc!r}")

    def ws_client() -> None:
        try:
            with connect(f"ws://127.0.0.1:{connector.port}/ws", open_timeout=30) as ws:
                attached.wait()
                try:
                    while True:
                        ws.recv(timeout=30)
                except ConnectionClosed as closed:
                    ws_codes.append(closed.rcvd.code if closed.rcvd else None)
        except Exception as exc:  # reported by the test thread
            failures.append(f"ws: {exc!r}")

    threads = [
        threading.Thread(target=sse_client if i % 2 else ws_client, daemon=True)
        for i in range(STREAM_CLIENTS)
    ]
    try:
        connector.wait_ready()
        for thread in threads:
            thread.start()
        attached.wait()
        code = connector.stop(signal.SIGINT)
        for thread in threads:
            thread.join(timeout=30)
    finally:
        connector.cleanup()
    stderr = connector.log_path.read_text()
    assert code == 0, stderr[-3000:]
    assert failures == []
    assert sse_endings == [": shutdown"] * (STREAM_CLIENTS // 2)
    assert ws_codes == [1001] * (STREAM_CLIENTS // 2)  # going away
    assert "Traceback" not in stderr
    assert "Exception in ASGI application" not in stderr
    assert "XREAD" not in stderr
    assert plain_lines(stderr.splitlines()) == []
    records = [json.loads(line) for line in stderr.splitlines()]
    # The startup catch-up said how far it was, per symbol (JSON lines: not a terminal).
    progress = [r for r in records if r["event"] == "progress"]
    for symbol in ("EURUSD", "GBPUSD", "USDJPY"):
        mine = [(r["done"], r["total"]) for r in progress if r["task"] == f"catch-up {symbol}"]
        assert mine[0][0] == 0 < mine[0][1]
        assert mine[-1][0] == mine[-1][1]
    events = [r["event"] for r in records]
    assert events.index("connector.caught_up") < events.index("connector.started")
    assert events.index("connector.stopping") < events.index("connector.stopped")
    stopping = next(json.loads(x) for x in stderr.splitlines() if "connector.stopping" in x)
    assert stopping["streams"] == STREAM_CLIENTS
    print(
        f"\nSIGINT with {STREAM_CLIENTS} stream clients: stopped in {connector.stop_seconds:.2f} s"
    )
    assert_nothing_left(tmp_path / "var")


def test_help_states_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert "exit codes:" in shown
    for line in ("0  stopped cleanly on SIGINT/SIGTERM", "1  runtime failure", "2  bad usage"):
        assert line in shown


def test_sigint_during_the_startup_catch_up_is_a_clean_stop(tmp_path: Path) -> None:
    connector = Connector(tmp_path / "var")
    try:
        polls = 0
        while '"task":"catch-up' not in connector.output():  # the catch-up has begun
            assert connector.proc.poll() is None, connector.tail()
            polls += 1
            assert polls < 600, connector.tail()
            time.sleep(0.05)
        code = connector.stop(signal.SIGINT)
    finally:
        connector.cleanup()
    stderr = connector.log_path.read_text()
    assert code == 0, stderr[-3000:]
    assert plain_lines(stderr.splitlines()) == []
    assert "connector.stopped" in stderr.splitlines()[-1]
    assert_nothing_left(tmp_path / "var")
