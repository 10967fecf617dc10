"""`fxconnector exec` end to end: the real process, its real control socket, a real Redis, the
paper gateway; `fxconnector order`/`risk` as subprocesses or in process (exit codes)."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis

from fxconnector.app.main import main
from fxconnector.client.execution import ExecClient, submit_intent
from fxconnector.core.model.exec_event import (
    ExecEvent,
    OrderEvent,
    OrderState,
    PositionEvent,
    RiskEvent,
)
from fxconnector.core.time_geom import iso_utc
from fxconnector.core.utils.frames import encode_frame
from fxconnector.execution.paper import PaperRecord, Placed
from tests.app.connector import Connector
from tests.app.exec_harness import KEYS, ExecRun, intent, send_then_kill, write_ticks
from tests.app.procs import pid_alive
from tests.redis_server import RedisServer

FXCONNECTOR = [sys.executable, "-m", "fxconnector.app.main"]


@pytest.fixture
def exec_run(tmp_path: Path, redis_server: RedisServer) -> Iterator[ExecRun]:
    write_ticks(redis_server.client())
    run = ExecRun(tmp_path / "var", redis_server.url)
    run.start()
    try:
        run.wait_ready()
        yield run
    finally:
        run.cleanup()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def journal(workdir: Path) -> list[ExecEvent]:
    lines = (workdir / "execution" / "journal.jsonl").read_bytes().splitlines()
    decoder = msgspec.json.Decoder(list[ExecEvent])
    return [event for line in lines for event in decoder.decode(line)]


def paper_books(workdir: Path) -> list[PaperRecord]:
    path = workdir / "execution" / "paper" / "paper.jsonl"
    if not path.exists():
        return []
    decoder = msgspec.json.Decoder(list[PaperRecord])
    return [record for line in path.read_bytes().splitlines() for record in decoder.decode(line)]


def published(client: redis.Redis, key: str, field: str) -> bytes:
    """The hash field once the exec process has published it (it does so every period)."""
    for _ in range(200):
        value = client.hget(key, field)
        if value:
            assert isinstance(value, bytes)
            return value
        time.sleep(0.05)
    raise AssertionError(f"{key} {field} was never published")


def test_submit_fills_on_paper_and_a_repeat_is_the_same_order(
    exec_run: ExecRun, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    first = submit_intent(intent("t-1"), socket_path=exec_run.socket_path)
    assert first.decision.value == "allow"
    assert first.order is not None
    assert first.order.state is OrderState.FILLED
    assert first.order.avg_fill_price == 1.1002  # a buy fills at the ask
    # Another intent under a used id is refused, never an order.
    other = submit_intent(intent("t-1", units=2000), socket_path=exec_run.socket_path)
    assert other.reason is not None
    assert other.reason.value == "intent_id_conflict"
    # The same intent again (a retry: only its ts is new) is the same order, nothing sent.
    repeat = submit_intent(intent("t-1"), socket_path=exec_run.socket_path)
    assert repeat.duplicate
    assert repeat.order == first.order
    # One order at the (paper) broker, one in the journal.
    placed = [r for r in paper_books(exec_run.workdir) if isinstance(r, Placed)]
    assert [p.intent.intent_id for p in placed] == ["t-1"]
    # Through the CLI: the status, exit 0, one JSON object.
    code, out, err = cli(capsys, "order", "status", "t-1", "--socket", str(exec_run.socket_path))
    assert (code, err) == (0, "")
    assert msgspec.json.decode(out)["order"]["state"] == "FILLED"
    # Published on the exec process's next period: the order and the position (read back
    # validated by the API tests).
    client = redis_server.client()
    stored = msgspec.json.decode(published(client, KEYS.exec_orders, "t-1"), type=OrderEvent)
    assert stored.state is OrderState.FILLED
    position = msgspec.json.decode(
        published(client, KEYS.exec_positions, "alice:EURUSD"), type=PositionEvent
    )
    assert position.units == 1000


def test_the_socket_is_owner_only(exec_run: ExecRun) -> None:
    mode = exec_run.socket_path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_halt_denies_with_its_reason_and_resume_allows(
    exec_run: ExecRun, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = str(exec_run.socket_path)
    code, out, _ = cli(capsys, "risk", "halt", "--reason", "news at 14:30", "--socket", sock)
    assert code == 0
    assert msgspec.json.decode(out)["state"] == "HALTED"
    payload = msgspec.json.encode(intent("h-1")).decode()
    code, out, err = cli(capsys, "order", "submit", "--json", payload, "--socket", sock)
    assert code == 3
    answer = msgspec.json.decode(out)
    assert (answer["decision"], answer["reason"], answer["order"]) == (
        "deny",
        "trading_halted",
        None,
    )
    assert err.startswith("fxconnector order submit: denied: trading_halted")
    # The deny is journaled: the same intent after a resume is still the same deny.
    assert cli(capsys, "risk", "resume", "--reason", "done", "--socket", sock)[0] == 0
    code, out, _ = cli(capsys, "order", "submit", "--json", payload, "--socket", sock)
    assert code == 3
    assert msgspec.json.decode(out)["duplicate"] is True
    intent_file = exec_run.workdir.parent / "h-2.json"
    intent_file.write_bytes(msgspec.json.encode(intent("h-2")))
    code, out, _ = cli(capsys, "order", "submit", "--file", str(intent_file), "--socket", sock)
    assert code == 0
    assert msgspec.json.decode(out)["order"]["state"] == "FILLED"


def test_submit_stamps_a_missing_ts_and_denies_an_old_one(
    exec_run: ExecRun, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = str(exec_run.socket_path)
    fresh = {k: v for k, v in intent("ts-1").items() if k != "ts"}
    before = time.time_ns() // 1_000_000
    code, out, err = cli(
        capsys, "order", "submit", "--json", msgspec.json.encode(fresh).decode(), "--socket", sock
    )
    after = time.time_ns() // 1_000_000
    assert (code, err) == (0, "")
    assert msgspec.json.decode(out)["order"]["state"] == "FILLED"
    (risk,) = [e for e in journal(exec_run.workdir) if isinstance(e, RiskEvent)]
    assert before <= risk.intent.ts <= after
    # An hour-old decision (past the 60 s default) is denied, journaled, never an order.
    old = intent("ts-2") | {"ts": before - 3_600_000}
    code, out, err = cli(
        capsys, "order", "submit", "--json", msgspec.json.encode(old).decode(), "--socket", sock
    )
    assert code == 3
    answer = msgspec.json.decode(out)
    assert (answer["decision"], answer["reason"], answer["order"]) == ("deny", "stale_intent", None)
    assert err.startswith(
        "fxconnector order submit: denied: stale_intent (the intent's ts "
        f"{iso_utc(before - 3_600_000)} is "
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["order", "submit", "--json", "{nope"], "--json: not JSON"),
        (["order", "submit", "--json", "[1]"], "expected a JSON object"),
        (["order", "submit", "--file", "/no/such/file.json"], "cannot read it"),
        (["order", "submit", "--json", '{"intent_id": "x"}'], "refused: bad_intent"),
        (
            [
                "order",
                "submit",
                "--json",
                msgspec.json.encode(intent("p") | {"price": 1.2}).decode(),
            ],
            "a market order takes no price",
        ),
        (["order", "status", "never-sent"], "refused: unknown_intent"),
        (["order", "cancel", "never-sent"], "refused: unknown_intent"),
        (["risk", "halt"], "required: --reason"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    exec_run: ExecRun, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = cli(capsys, *argv, "--socket", str(exec_run.socket_path))
    assert (code, out) == (2, "")
    assert message in err
    assert err.count("\n") == 1


def test_exec_without_traders_or_with_a_long_socket_path_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "exec", "--profile", "fx", "--workdir", str(tmp_path))
    assert (code, out) == (2, "")
    assert "execution.traders is empty" in err
    long_dir = tmp_path / ("d" * 100)
    code, out, err = cli(capsys, "exec", "--workdir", str(long_dir))
    assert (code, out) == (2, "")
    assert "longer than a unix socket path may be" in err


def test_a_bad_frame_is_refused_and_the_socket_keeps_serving(exec_run: ExecRun) -> None:
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(exec_run.socket_path))
        raw.sendall(encode_frame({"op": "frobnicate"}) + (5).to_bytes(4, "big") + b"nope!")
        data = raw.makefile("rb").read()
    assert b'"code":"bad_request"' in data
    with ExecClient(exec_run.socket_path) as client:
        assert client.submit(intent("after-bad")).decision.value == "allow"


def test_without_exec_the_cli_says_so_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "order", "status", "x", "--workdir", str(tmp_path))
    assert (code, out) == (1, "")
    assert f"no exec process answers on {tmp_path / 'exec.sock'}" in err


def test_one_exec_per_journal_and_a_gateway_without_credentials_is_refused(
    exec_run: ExecRun, redis_server: RedisServer, tmp_path: Path
) -> None:
    second = subprocess.run(exec_run.argv, capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 2
    assert "another exec process writes this journal" in second.stderr
    fxcm = subprocess.run(
        [*exec_run.argv[:4], "--workdir", str(tmp_path / "o"), "--set", "execution.gateway=fxcm"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert fxcm.returncode == 2
    assert "needs credentials" in fxcm.stderr  # fxcm runs, but not without its login
    unknown = subprocess.run(
        [*exec_run.argv[:4], "--workdir", str(tmp_path / "u"), "--set", "execution.colour=1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unknown.returncode == 2
    assert "unknown key 'execution.colour'" in unknown.stderr


def test_kill_9_mid_submit_then_restart_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    write_ticks(redis_server.client())
    workdir = tmp_path / "var"
    chooser = random.Random(15)  # the kill points: fixed, varied
    intents = [intent(f"k-{n}", units=1000 + n) for n in range(8)]
    run = ExecRun(workdir, redis_server.url)
    try:
        for payload in intents:
            run.start()
            run.wait_ready()
            send_then_kill(run, payload, chooser.choice([0.0, 0.0005, 0.002, 0.01]))
        run.start()
        run.wait_ready()
        # Every intent submitted again (as a client does after losing its answer): never a
        # second order; then each resolves on the broker's evidence alone.
        for payload in intents:
            submit_intent(payload, socket_path=run.socket_path)
        final = {p["intent_id"]: _resolved(run, p["intent_id"]) for p in intents}
        assert run.stop() == 0
    finally:
        run.cleanup()
    placed = Counter(r.intent.intent_id for r in paper_books(workdir) if isinstance(r, Placed))
    assert all(count == 1 for count in placed.values()), placed  # no duplicate at the broker
    events = journal(workdir)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    journaled = {e.intent_id for e in events if isinstance(e, OrderEvent)}
    assert journaled == {p["intent_id"] for p in intents}  # no lost intent
    filled = 0
    for intent_id, order in final.items():
        if placed[intent_id]:  # the broker has it: filled, once
            assert order.state is OrderState.FILLED, order
            filled += order.filled_units
        else:  # journaled, killed before it was sent: the broker's "no such order" decides
            assert order.state is OrderState.REJECTED, order
            assert "never arrived" in order.reason
    positions = [e for e in events if isinstance(e, PositionEvent)]
    assert positions[-1].units == filled
    assert filled == sum(p["units"] for p in intents if placed[p["intent_id"]])


def _resolved(run: ExecRun, intent_id: str) -> OrderEvent:
    """The order once it is in a terminal state (bounded wait; the core queries on its own)."""
    deadline = time.monotonic() + 30
    while True:
        with ExecClient(run.socket_path) as client:
            order = client.status(intent_id).order
        assert order is not None
        if order.state.terminal or time.monotonic() > deadline:
            return order
        time.sleep(0.05)


def test_make_run_demo_places_a_paper_order_in_one_command(tmp_path: Path) -> None:
    """`fxconnector run --with-exec` (what `make run` runs): the README's one command fills
    on paper from the simulator's live prices and shows in /api/orders and /api/positions."""
    connector = Connector(tmp_path / "var", "--with-exec")
    try:
        connector.wait_ready()
        answer = None
        for attempt in range(200):
            payload = msgspec.json.encode(
                {
                    "intent_id": f"demo-{attempt}",
                    "trader": "demo",
                    "symbol": "EURUSD",
                    "side": "buy",
                    "units": 1000,
                    "type": "market",
                }
            ).decode()
            done = subprocess.run(
                [
                    *FXCONNECTOR,
                    "order",
                    "submit",
                    "--workdir",
                    str(tmp_path / "var"),
                    "--json",
                    payload,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if done.returncode == 0:
                answer = msgspec.json.decode(done.stdout)
                break
            # The exec child is not up yet (1, 2 not_ready), or the first live tick is on its
            # way (3, no_price): a deny is final for its id, so the next try takes a new one.
            assert done.returncode in (1, 2, 3), done.stderr
            time.sleep(0.1)
        assert answer is not None, connector.tail()
        assert answer["order"]["state"] == "FILLED"
        with httpx.Client(base_url=connector.base, timeout=5) as http:
            orders: list[dict[str, Any]] = []
            for _ in range(100):  # published on the exec process's next period
                orders = http.get("/api/orders").json()["orders"]
                if orders:
                    break
                time.sleep(0.1)
            assert [(o["intent_id"], o["state"]) for o in orders] == [
                (answer["intent_id"], "FILLED")
            ]
            positions = http.get("/api/positions", params={"trader": "demo"}).json()["positions"]
            assert [(p["symbol"], p["units"]) for p in positions] == [("EURUSD", 1000)]
            # The exec process's live status: served, and a line of `fxconnector status`. It is
            # written after the orders and positions in a period: wait for the one with the fill.
            process: dict[str, Any] | None = None
            for _ in range(100):
                process = http.get("/api/exec").json()["process"]
                if process is not None and process["open_positions"] == 1:
                    break
                time.sleep(0.1)
            assert process is not None
            assert (process["gateway"], process["trading_state"]) == ("paper", "ACTIVE")
            assert (process["open_orders"], process["open_positions"]) == (0, 1)
        human = subprocess.run(
            [*FXCONNECTOR, "status", "--http", f"127.0.0.1:{connector.port}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert human.returncode == 0, human.stderr
        assert re.search(
            r"^exec      paper pid \d+, trading ACTIVE; open orders 0, open positions 1, "
            r"journal seq \d+ \(as of \d+ s ago\)$",
            human.stdout,
            re.MULTILINE,
        ), human.stdout
        assert connector.stop() == 0
        assert not (tmp_path / "var" / "exec.sock").exists()  # the child stopped cleanly too
    finally:
        connector.cleanup()


def test_the_exec_child_dies_with_a_killed_connector(tmp_path: Path) -> None:
    connector = Connector(tmp_path / "var", "--with-exec")
    try:
        connector.wait_ready()
        pid = exec_child_pid(connector)
        assert Path(f"/proc/{pid}").exists()
        connector.kill()  # SIGKILL: no cleanup in the connector at all
        for _ in range(200):
            if not pid_alive(pid):
                break
            time.sleep(0.05)
        assert not pid_alive(pid), "the exec child outlived its killed connector"
    finally:
        connector.cleanup()
        # The killed connector could not stop its embedded Redis: do it here.
        with (
            contextlib.suppress(redis.RedisError, OSError),
            redis.Redis(unix_socket_path=str(tmp_path / "var" / "redis" / "redis.sock")) as orphan,
        ):
            orphan.shutdown(nosave=True)


def exec_child_pid(connector: Connector) -> int:
    """The pid of the connector's first exec child, from its `exec_child.started` line."""
    for _ in range(200):
        for line in connector.output().splitlines():
            if '"exec_child.started"' in line:
                return int(msgspec.json.decode(line)["pid"])
        time.sleep(0.05)
    raise AssertionError(f"no exec child started:\n{connector.tail()}")


def test_a_terminals_ctrl_c_reaches_only_the_connector_which_stops_the_exec_child(
    tmp_path: Path,
) -> None:
    """The child has its own process group, so a Ctrl-C (SIGINT to the terminal's group) never
    lands in it, even mid-import; the connector's own stop ends it, without a traceback."""
    connector = Connector(tmp_path / "var", "--with-exec")
    try:
        connector.wait_ready()
        pid = exec_child_pid(connector)
        assert os.getpgid(pid) == pid != os.getpgid(connector.proc.pid)
        assert connector.stop(signal.SIGINT) == 0
        output = connector.output()
        assert "Traceback" not in output
        assert '"exec_child.exited"' not in output  # no restart planned during the stop
        assert not pid_alive(pid)
    finally:
        connector.cleanup()
