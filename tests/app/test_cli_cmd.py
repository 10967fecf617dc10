"""`fxconnector cmd`: over the control socket to a running connector, or directly."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fxconnector.app.main import main
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.app.connector import Connector


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
        (["cmd", "frobnicate"], "unknown command 'frobnicate'"),
        (["cmd", "warmup", "--symbols", "EURUSD"], "warmup needs --lookback-mins"),
        (
            ["cmd", "tail_guard", "--symbols", "EURUSD", "--window-hours", "2", "--tf", "1m"],
            "tail_guard takes no --tf",
        ),
        (["cmd", "tail_guard", "--symbols", "EURUSD", "--window-hours", "0"], "window_hours"),
        (["cmd", "backfill", "--symbol", "EURUSD", "--from", "yesterday", "--to", "now"], "--from"),
        (["cmd", "republish_tail", "--symbol", "EURUSD", "--tf", "2m", "--bars", "5"], "tf"),
    ],
)
def test_bad_usage_is_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, *argv, "--workdir", str(tmp_path))
    assert code == 2
    assert out == ""
    assert message in err


@pytest.mark.slow
def test_commands_round_trip_over_the_control_socket(tmp_path: Path) -> None:
    running = Connector(tmp_path / "var")
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
        with httpx.Client(timeout=5.0) as http:
            status = http.get(f"{running.base}/api/status").json()
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
        assert "command   warmup" in human.stdout
        assert "EURUSD   last final 1m" in human.stdout
        # The connector's own console shows the running command's progress (JSON lines here).
        deadline = time.monotonic() + 30
        while '"task":"warmup"' not in running.output():
            assert time.monotonic() < deadline, running.tail()
            time.sleep(0.2)
    finally:
        assert running.stop() == 0


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
