"""`fxconnector cmd`: over the control socket to a running connector, or directly."""

from __future__ import annotations

import json
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fxconnector.app.main import main
from fxconnector.core.contracts import ContractName, load_schema
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.app.connector import Connector
from tests.conftest import REPO


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cmd", "frobnicate"], "invalid choice: 'frobnicate'"),
        (["cmd", "warmup", "--symbols", "EURUSD"], "required: --lookback-mins"),
        (
            ["cmd", "tail_guard", "--symbols", "EURUSD", "--window-hours", "2", "--tf", "1m"],
            "unrecognized arguments: --tf 1m",
        ),
        (["cmd", "tail_guard", "--symbols", "EURUSD", "--window-hours", "0"], "window_hours"),
        (["cmd", "backfill", "--symbol", "EURUSD", "--from", "yesterday", "--to", "now"], "--from"),
        (
            ["cmd", "republish_tail", "--symbol", "EURUSD", "--tf", "2m", "--bars", "5"],
            "argument --tf: invalid choice: '2m'",
        ),
    ],
)
def test_bad_usage_is_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, *argv, "--workdir", str(tmp_path))
    assert code == 2
    assert out == ""
    assert message in err


def test_a_command_that_needs_the_connector_says_so_without_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "var"
    argv = ["cmd", "republish_tail", "--symbol", "EURUSD", "--tf", "1m", "--bars", "50"]
    code, out, err = cli(capsys, *argv, "--workdir", str(workdir))
    assert (code, out) == (2, "")
    assert err.startswith("fxconnector cmd: error: republish_tail needs the running connector")
    assert f"none answers on {workdir / 'control.sock'}" in err
    assert f"fxconnector run --workdir {workdir}" in err
    # A stale socket of a connector that died is no connector either.
    workdir.mkdir()
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(workdir / "control.sock"))
    code, out, err = cli(capsys, *argv, "--workdir", str(workdir))
    assert (code, out) == (2, "")
    assert "needs the running connector" in err


def test_help_lists_every_command_of_the_schema_with_its_own_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    schema = load_schema(ContractName.COMMANDS_V1)
    defs = schema["$defs"]
    code, listing, _ = cli(capsys, "cmd", "--help")
    assert code == 0
    for choice in schema["oneOf"]:
        command = defs[choice["$ref"].removeprefix("#/$defs/")]
        name = command["properties"]["cmd"]["enum"][0]
        args = defs[command["properties"]["args"]["$ref"].removeprefix("#/$defs/")]
        flags = {"--" + f.removesuffix("_ms").replace("_", "-") for f in args["properties"]}
        line = next(x for x in listing.splitlines() if x.startswith(f"  fxconnector cmd {name} "))
        assert set(re.findall(r"--[a-z-]+", line)) == flags, line
        code, own, _ = cli(capsys, "cmd", name, "--help")
        assert code == 0
        shown = set(re.findall(r"^  (--[a-z-]+)", own, re.MULTILINE))
        assert shown == flags | {"--workdir", "--config", "--profile", "--json", "--no-wait"}
        assert command["description"].removeprefix(f"{name}: ")[:40] in " ".join(own.split())


@pytest.mark.slow
def test_commands_round_trip_over_the_control_socket(tmp_path: Path) -> None:
    # 12 history requests a minute: the startup catch-up (9 requests) fits the burst, and the
    # 7-day warmup below (12 more) outlasts the checks made while it runs, however fast the
    # machine is (it is paced by the budget, not by the machine).
    running = Connector(tmp_path / "var", "--set", "broker.history_requests_per_min=12")
    try:
        running.wait_ready()
        sock = running.workdir / "control.sock"
        mode = stat.S_IMODE(sock.stat().st_mode)
        assert mode == 0o600, oct(mode)  # owner-only: not world- or group-accessible

        def cmd(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "fxconnector.app.main",
                    "cmd",
                    *argv,
                    "--workdir",
                    str(running.workdir),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        done = cmd("tail_guard", "--symbols", "EURUSD,USDJPY", "--window-hours", "6", "--json")
        assert done.returncode == 0, done.stderr
        final = json.loads(done.stdout)
        assert final["state"] == "done"
        result = final["last_command"]["result"]["symbols"]
        assert result["EURUSD"]["before"]["coverage"]["missing"] == 0
        assert result["USDJPY"]["before"]["coverage"]["final"] > 300
        # A long command is accepted without waiting; a second one meanwhile is refused.
        long = cmd(
            "warmup", "--symbols", "EURUSD,GBPUSD,USDJPY", "--lookback-mins", "10080", "--no-wait"
        )
        assert long.returncode == 0, long.stderr
        busy = cmd("republish_tail", "--symbol", "EURUSD", "--tf", "1h", "--bars", "5")
        assert busy.returncode == 2
        assert "busy: warmup" in busy.stderr
        # The status is rebuilt on a period: the warmup's first progress report shows up in the
        # next pass after it (a pass may fall between the accept and the first report).
        with httpx.Client(timeout=5.0) as http:
            for _ in range(300):
                status = http.get(f"{running.base}/api/status").json()
                progress = status["last_command"].get("progress") or {}
                if progress.get("total", 0) > 0 or status["last_command"]["state"] != "running":
                    break
                time.sleep(0.1)
        assert status["last_command"]["cmd"] == "warmup"
        assert status["last_command"]["state"] == "running"
        assert status["last_command"]["progress"]["total"] > 0
        human = subprocess.run(
            [
                sys.executable,
                "-m",
                "fxconnector.app.main",
                "status",
                "--http",
                f"127.0.0.1:{running.port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert human.returncode == 0, human.stderr
        assert "broker    sim connected" in human.stdout
        assert "finals within 6 s (planned)" in human.stdout
        assert "command   warmup" in human.stdout
        assert re.search(r"EURUSD +[a-z_]+ +1m final closed ", human.stdout), human.stdout
        assert re.search(r"finals    newest 1m final closed \d+ s ago", human.stdout)
        assert "symbols   3: " in human.stdout
        assert "repair    every 300 s over 24 h; no run yet" in human.stdout
        # The connector's own console shows the running command's progress (JSON lines here).
        deadline = time.monotonic() + 30
        while '"task":"warmup"' not in running.output():
            assert time.monotonic() < deadline, running.tail()
            time.sleep(0.2)
    finally:
        assert running.stop() == 0
    # Every command is in the connector's log: what ran with its arguments and result, and
    # what was refused with why.
    logged = [json.loads(line) for line in running.log_path.read_text().splitlines()]
    started = [e for e in logged if e["event"] == "command.started"]
    assert started[0]["cmd"] == "tail_guard"
    assert started[0]["args"] == {
        "symbols": ["EURUSD", "USDJPY"],
        "window_hours": 6,
        "repair": False,
    }
    assert started[0]["level"] == "info"
    finished = next(e for e in logged if e["event"] == "command.finished")
    assert (finished["cmd"], finished["state"], finished["level"]) == ("tail_guard", "done", "info")
    assert finished["req_id"] == started[0]["req_id"]
    assert "EURUSD" in json.dumps(finished["result"])
    assert started[1]["cmd"] == "warmup"
    refused = next(e for e in logged if e["event"] == "command.refused")
    assert refused["cmd"] == "republish_tail"
    assert refused["error"].startswith("busy: warmup")


@pytest.mark.slow
def test_without_a_connector_the_command_runs_directly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "var"
    code, out, err = cli(
        capsys,
        "cmd",
        "backfill",
        "--workdir",
        str(workdir),
        "--symbol",
        "EURUSD",
        "--from",
        "2026-01-05T10:00:00Z",
        "--to",
        "2026-01-05T12:00:00Z",
        "--json",
    )
    assert code == 0, err
    final = json.loads(out)
    assert final["state"] == "done"
    assert final["last_command"]["result"]["symbols"]["EURUSD"]["new"] > 100
    store = JsonlStore(workdir / "ssot")
    store.open()
    try:
        assert len(list(store.bars("EURUSD", Timeframe.H1))) == 2  # derived too
        # While another writer holds the store (and no control socket answers), a clear error.
        code, out, err = cli(
            capsys,
            "cmd",
            "rebuild_derived",
            "--workdir",
            str(workdir),
            "--symbol",
            "EURUSD",
            "--from",
            "2026-01-05T10:00:00Z",
            "--to",
            "2026-01-05T12:00:00Z",
        )
        assert code == 2
        assert "holds the store" in err
    finally:
        store.close()


def test_status_without_a_connector_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = cli(capsys, "status", "--http", "127.0.0.1:9")
    assert code == 2
    assert "no connector answers at http://127.0.0.1:9/api/status" in err


def test_docs_api_documents_the_push_routes_and_every_command_with_its_flags() -> None:
    text = (REPO / "docs" / "api.md").read_text()
    assert "## The push stream: SSE `/api/stream` and WebSocket `/ws`" in text
    schema = load_schema(ContractName.COMMANDS_V1)
    defs = schema["$defs"]
    rows = {
        match["name"]: match["flags"]
        for match in re.finditer(r"^\| `(?P<name>[a-z_]+)` \| (?P<flags>[^|]+) \|", text, re.M)
    }
    for choice in schema["oneOf"]:
        command = defs[choice["$ref"].removeprefix("#/$defs/")]
        name = command["properties"]["cmd"]["enum"][0]
        args = defs[command["properties"]["args"]["$ref"].removeprefix("#/$defs/")]
        flags = {"--" + f.removesuffix("_ms").replace("_", "-") for f in args["properties"]}
        assert set(re.findall(r"--[a-z-]+", rows[name])) == flags, name
