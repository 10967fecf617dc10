"""`fxconnector exec` with `gateway = "fxcm"` end to end: the real exec process, its real
ForexConnect bridge (`bridge.py --orders`) over the stand-in SDK, a real Redis, and the real
`fxconnector order submit|status|cancel` command lines.

The stand-in is handed to the bridge the way an operator hands a proxy variable: through
`[execution.fxcm] pass_env`. Its server keeps the books (FXCM's side) in a JSON file, read here
to count orders and trades: the proof that a retry or a kill -9 never makes a second order.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from fxconnector.core.model.exec_event import ExecEvent, OrderEvent, OrderState, PositionEvent
from fxconnector.runtime.ingest.broker.fxcm.bridge_env import PASSWORD_ENV, USER_ENV
from tests.app.exec_harness import CONFIG, ExecRun, intent, send_then_kill, write_ticks
from tests.app.procs import child_pids, pid_alive
from tests.redis_server import RedisServer

FXCONNECTOR = [sys.executable, "-m", "fxconnector.app.main"]
SRC = Path(__file__).parents[2] / "src"
STANDIN = Path(__file__).parents[1] / "runtime" / "ingest" / "broker" / "fxcm" / "standin"
WAIT_S = 30.0
PASS_ENV = (
    "PYTHONPATH",
    "FXCM_STANDIN_BOOKS",
    "FXCM_STANDIN_CONTROL",
    "FXCM_STANDIN_TICKS_PER_MINUTE",
)


class StandIn:
    """FXCM's side: the stand-in's books and its control file of faults."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.books = root / "books.json"
        self.control = root / "control.json"
        self.control.write_text("{}")

    def set(self, **faults: Any) -> None:
        current = json.loads(self.control.read_text())
        current.update(faults)
        temporary = self.control.with_suffix(".tmp")
        temporary.write_text(json.dumps(current))
        os.replace(temporary, self.control)

    def environment(self) -> dict[str, str]:
        return {
            "PYTHONPATH": os.pathsep.join((str(SRC), str(STANDIN))),
            "FXCM_STANDIN_BOOKS": str(self.books),
            "FXCM_STANDIN_CONTROL": str(self.control),
            "FXCM_STANDIN_TICKS_PER_MINUTE": "600",
            USER_ENV: "standin",
            PASSWORD_ENV: "standin",
        }

    def _data(self) -> dict[str, Any]:
        if not self.books.exists():
            return {"orders": {}, "trades": {}, "closed_trades": {}}
        data: dict[str, Any] = json.loads(self.books.read_text())
        return data

    def trades(self, custom_id: str) -> list[dict[str, Any]]:
        trades = self._data()["trades"].values()
        return [t for t in trades if t["open_order_request_txt"] == custom_id]

    def orders(self, custom_id: str) -> list[dict[str, Any]]:
        return [o for o in self._data()["orders"].values() if o["request_txt"] == custom_id]

    def all_trades(self) -> list[dict[str, Any]]:
        return list(self._data()["trades"].values())


def fxcm_config() -> str:
    python = os.environ.get("FXCM_TEST_PYTHON", "") or sys.executable
    assert 'gateway = "paper"' in CONFIG
    # A real bridge process answers later than the in-process paper gateway: a "no such order"
    # is believed 5 s after the submit (not 1 s), so a stalled stand-in on a loaded machine is
    # not taken for an order that never arrived.
    config = CONFIG.replace('gateway = "paper"', 'gateway = "fxcm"')
    for paper, fxcm in (("ack_timeout_ms = 500", "ack_timeout_ms = 2000"),
                        ("not_found_grace_ms = 1000", "not_found_grace_ms = 5000")):  # fmt: skip
        assert paper in config
        config = config.replace(paper, fxcm)
    return config + (
        "\n[execution.fxcm]\n"
        f"python = {json.dumps(python)}\n"
        'connection = "Demo"\n'
        'url = "http://standin.invalid/Hosts.jsp"\n'
        "request_timeout_s = 30\n"
        f"connect_timeout_s = {WAIT_S:g}\n"
        f"pass_env = {json.dumps(list(PASS_ENV))}\n"
    )


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    """The stand-in's environment in ours: the exec process inherits it and hands the bridge
    only what `pass_env` names (and the credentials, from the secrets)."""
    stand = StandIn(tmp_path / "fxcm-server")
    for name, value in stand.environment().items():
        monkeypatch.setenv(name, value)
    return stand


class FxcmExecRun(ExecRun):
    """An exec process whose bridge children are tracked, so a SIGKILLed exec's bridge is
    seen to go (stdin EOF) before the next one starts, and never outlives the test."""

    def __init__(self, workdir: Path, redis_url: str) -> None:
        super().__init__(workdir, redis_url, config=fxcm_config())
        self.bridges: set[int] = set()

    def wait_ready(self) -> None:
        super().wait_ready()
        assert self.proc is not None
        children = child_pids(self.proc.pid)
        assert children, "the exec process runs no fxcm bridge"
        self.bridges |= children

    def kill(self) -> None:
        super().kill()
        deadline = time.monotonic() + WAIT_S
        while any(pid_alive(pid) for pid in self.bridges):
            assert time.monotonic() < deadline, "the bridge outlived its killed exec process"
            time.sleep(0.05)
        self.bridges.clear()  # gone: their pids may be reused, never signal them again

    def cleanup(self) -> None:
        super().cleanup()
        for pid in self.bridges:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):  # it ended since the check
                    os.kill(pid, 9)


@pytest.fixture
def exec_run(tmp_path: Path, redis_server: RedisServer, standin: StandIn) -> Iterator[FxcmExecRun]:
    write_ticks(redis_server.client())
    run = FxcmExecRun(tmp_path / "var", redis_server.url)
    run.start()
    try:
        run.wait_ready()
        yield run
    finally:
        run.cleanup()


def order_cli(run: ExecRun, *argv: str, timeout_s: float = 60.0) -> tuple[int, Any, str]:
    """`fxconnector order ...` as a process: its exit code, its JSON answer, its stderr."""
    done = subprocess.run(
        [*FXCONNECTOR, "order", *argv, "--socket", str(run.socket_path), "--timeout", "45"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    answer = msgspec.json.decode(done.stdout) if done.stdout.strip() else None
    return done.returncode, answer, done.stderr


def submit(run: ExecRun, payload: dict[str, Any]) -> tuple[int, Any, str]:
    return order_cli(run, "submit", "--json", msgspec.json.encode(payload).decode())


def until_state(run: ExecRun, intent_id: str, *states: str) -> dict[str, Any]:
    """`fxconnector order status` until the order is in one of `states` (bounded)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        code, answer, err = order_cli(run, "status", intent_id)
        assert code == 0, err
        order: dict[str, Any] = answer["order"]
        if order["state"] in states:
            return order
        assert time.monotonic() < deadline, f"{intent_id} still {order['state']}:\n{run.tail()}"
        time.sleep(0.1)


def journal(workdir: Path) -> list[ExecEvent]:
    lines = (workdir / "execution" / "journal.jsonl").read_bytes().splitlines()
    decoder = msgspec.json.Decoder(list[ExecEvent])
    return [event for line in lines for event in decoder.decode(line)]


def journaled(workdir: Path, intent_id: str) -> OrderState | None:
    """The intent's last journaled order state while the exec process writes (a line being
    written is skipped)."""
    path = workdir / "execution" / "journal.jsonl"
    decoder = msgspec.json.Decoder(list[ExecEvent])
    state = None
    for line in path.read_bytes().splitlines() if path.exists() else []:
        with contextlib.suppress(msgspec.DecodeError):
            for event in decoder.decode(line):
                if isinstance(event, OrderEvent) and event.intent_id == intent_id:
                    state = event.state
    return state


def submit_in_background(run: ExecRun, payload: dict[str, Any]) -> subprocess.Popen[bytes]:
    """`fxconnector order submit` left waiting for its answer."""
    text = msgspec.json.encode(payload).decode()
    argv = ["order", "submit", "--json", text, "--timeout", "60", "--socket", str(run.socket_path)]
    return subprocess.Popen(
        [*FXCONNECTOR, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_market_order_fills_and_a_resubmit_is_the_same_order(
    exec_run: FxcmExecRun, standin: StandIn
) -> None:
    payload = intent("fx-m-1", units=2000)
    code, first, err = submit(exec_run, payload)
    assert code == 0, err
    assert first["decision"] == "allow"
    order = until_state(exec_run, "fx-m-1", "FILLED", "REJECTED", "CANCELLED")
    assert order["state"] == "FILLED"
    assert order["filled_units"] == 2000
    [trade] = standin.trades("fx-m-1")
    assert (trade["amount"], trade["buy_sell"]) == (2000, "B")
    assert order["avg_fill_price"] == trade["open_rate"]
    # The same intent again (a client's retry after a lost answer): the same order, nothing
    # sent to FXCM.
    code, again, err = submit(exec_run, payload)
    assert code == 0, err
    assert again["duplicate"] is True
    assert again["order"] == order
    assert len(standin.trades("fx-m-1")) == 1
    assert len(standin.all_trades()) == 1
    positions = [e for e in journal(exec_run.workdir) if isinstance(e, PositionEvent)]
    assert positions[-1].units == 2000


def test_a_limit_order_works_until_cancelled(exec_run: FxcmExecRun, standin: StandIn) -> None:
    payload = intent("fx-l-1") | {"type": "limit", "price": 0.5}  # far below the market
    code, first, err = submit(exec_run, payload)
    assert code == 0, err
    assert first["decision"] == "allow"
    working = until_state(exec_run, "fx-l-1", "ACCEPTED")  # resting at FXCM
    assert working["broker_order_id"]
    [resting] = standin.orders("fx-l-1")
    assert resting["order_id"] == working["broker_order_id"]
    code, _, err = order_cli(exec_run, "cancel", "fx-l-1")
    assert code == 0, err
    order = until_state(exec_run, "fx-l-1", "CANCELLED", "FILLED", "REJECTED")
    assert order["state"] == "CANCELLED"
    assert order["filled_units"] == 0
    assert standin.orders("fx-l-1") == []
    assert standin.trades("fx-l-1") == []


def test_kill_9_mid_submit_is_resolved_on_restart_from_the_fxcm_tables(
    tmp_path: Path, redis_server: RedisServer, standin: StandIn
) -> None:
    """FXCM places the order but its answer never comes (order_no_completion) and its dealer
    holds the execution (order_fill_hold): the submit hangs; the exec process is SIGKILLed
    then. FXCM executes the order while no process of ours runs; the restart's recovery finds
    it by its custom id in FXCM's tables: FILLED, one trade, never a second order."""
    write_ticks(redis_server.client())
    workdir = tmp_path / "var"
    run = FxcmExecRun(workdir, redis_server.url)
    client: subprocess.Popen[bytes] | None = None
    try:
        run.start()
        run.wait_ready()
        standin.set(order_no_completion=True, order_fill_hold=True)
        payload = intent("fx-k-1", units=3000)
        client = submit_in_background(run, payload)
        deadline = time.monotonic() + WAIT_S
        while not standin.orders("fx-k-1"):  # placed at FXCM; its completion never comes
            assert time.monotonic() < deadline, run.tail()
            time.sleep(0.02)
        assert client.poll() is None  # the submit still waits for FXCM's answer
        run.kill()
        _, client_err = client.communicate(timeout=WAIT_S)
        assert client.returncode == 1, client_err  # the outcome is unknown to the client
        before = [e for e in journal(workdir) if isinstance(e, OrderEvent)]
        assert before[-1].intent_id == "fx-k-1"
        assert not before[-1].state.terminal  # killed before any evidence of a fill
        assert standin.trades("fx-k-1") == []
        standin.set(order_no_completion=False, order_fill_hold=False)
        run.start()
        run.wait_ready()
        order = until_state(run, "fx-k-1", "FILLED", "REJECTED", "CANCELLED")
        assert order["state"] == "FILLED"
        assert order["filled_units"] == 3000
        # The client submits again after its lost answer: the same order, nothing sent.
        code, again, err = submit(run, payload)
        assert code == 0, err
        assert again["duplicate"] is True
        assert again["order"]["state"] == "FILLED"
        assert run.stop() == 0
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        if client is not None:
            client.communicate(timeout=10)  # reaped, its pipes closed
        run.cleanup()
    [trade] = standin.trades("fx-k-1")
    assert trade["amount"] == 3000
    assert len(standin.all_trades()) == 1
    events = journal(workdir)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    positions = [e for e in events if isinstance(e, PositionEvent)]
    assert positions[-1].units == 3000


def test_kill_9_at_varied_points_never_makes_a_second_fxcm_order(
    tmp_path: Path, redis_server: RedisServer, standin: StandIn
) -> None:
    """Killed before the journal, before the bridge, before FXCM, or after: after the restart
    and a resubmit of every intent, each one is FILLED with exactly one trade at FXCM, or
    REJECTED because FXCM never had it (its tables say so past the grace)."""
    write_ticks(redis_server.client())
    workdir = tmp_path / "var"
    delays = [0.0, 0.001, 0.005, 0.02, 0.1]  # the kill points: fixed, varied
    intents = [intent(f"fx-v-{n}", units=1000 + n) for n in range(len(delays))]
    run = FxcmExecRun(workdir, redis_server.url)
    try:
        for payload, delay_s in zip(intents, delays, strict=True):
            run.start()
            run.wait_ready()
            send_then_kill(run, payload, delay_s)
        run.start()
        run.wait_ready()
        for payload in intents:  # as a client does after losing its answer
            code, _, err = submit(run, payload)
            assert code == 0, err
        final = {
            p["intent_id"]: until_state(run, p["intent_id"], "FILLED", "REJECTED", "CANCELLED")
            for p in intents
        }
        assert run.stop() == 0
    finally:
        run.cleanup()
    events = journal(workdir)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.intent_id for e in events if isinstance(e, OrderEvent)} == set(final)
    filled = 0
    for payload in intents:
        intent_id = payload["intent_id"]
        trades = standin.trades(intent_id)
        assert len(trades) <= 1, trades  # never a second order at FXCM
        order = final[intent_id]
        if trades:
            assert order["state"] == "FILLED", order
            assert order["filled_units"] == trades[0]["amount"] == payload["units"]
            filled += payload["units"]
        else:
            assert order["state"] == "REJECTED", order
            assert "never arrived" in order["reason"]
    positions = [e for e in events if isinstance(e, PositionEvent)]
    assert positions[-1].units == filled


def test_kill_9_mid_submit_of_an_order_fxcm_never_got_rejects_it_on_restart(
    tmp_path: Path, redis_server: RedisServer, standin: StandIn
) -> None:
    """The CreateOrder is lost on its way (order_drop): journaled and sent, never placed, no
    answer; the exec process is SIGKILLed while the submit waits. On restart FXCM's tables
    have no order with this custom id: past the grace it is REJECTED, and nothing is resent."""
    write_ticks(redis_server.client())
    workdir = tmp_path / "var"
    run = FxcmExecRun(workdir, redis_server.url)
    client: subprocess.Popen[bytes] | None = None
    try:
        run.start()
        run.wait_ready()
        standin.set(order_drop=True)
        client = submit_in_background(run, intent("fx-d-1"))
        deadline = time.monotonic() + WAIT_S
        while journaled(workdir, "fx-d-1") is not OrderState.SUBMITTED:  # sent to the bridge
            assert time.monotonic() < deadline, run.tail()
            time.sleep(0.02)
        run.kill()
        _, client_err = client.communicate(timeout=WAIT_S)
        assert client.returncode == 1, client_err
        state = journaled(workdir, "fx-d-1")
        assert state is not None
        assert not state.terminal  # killed before FXCM's tables could say anything
        standin.set(order_drop=False)
        run.start()
        run.wait_ready()
        order = until_state(run, "fx-d-1", "FILLED", "REJECTED", "CANCELLED")
        assert order["state"] == "REJECTED"
        assert "never arrived" in order["reason"]
        assert run.stop() == 0
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        if client is not None:
            client.communicate(timeout=10)  # reaped, its pipes closed
        run.cleanup()
    assert standin.orders("fx-d-1") == []
    assert standin.trades("fx-d-1") == []
    assert not standin.books.exists() or standin.all_trades() == []
