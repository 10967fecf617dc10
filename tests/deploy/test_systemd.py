"""deploy/systemd/fxconnector.service: valid for systemd, hardened, and starting a real command.

`systemd-analyze verify` checks the unit as systemd would load it (it needs ExecStart's program
to exist, so the check runs on a copy whose ExecStart names this checkout's `fxconnector`);
without systemd-analyze that test skips and says why. The unit's own settings and its
ExecStart command line are checked against the real CLI parser everywhere.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fxconnector.app.cli_run import cmd_run
from fxconnector.app.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "fxconnector.service"
INSTALLED = "/opt/fxconnector/venv/bin/fxconnector"


def settings() -> dict[str, list[str]]:
    """Every `Key=value` of the [Service] section (a key may repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_restarts_on_failure_as_a_dedicated_hardened_user() -> None:
    service = settings()
    assert service["Restart"] == ["on-failure"]
    assert service["RestartPreventExitStatus"] == ["2"]  # a bad config is not retried
    assert service["User"] == ["fxconnector"]
    assert service["Group"] == ["fxconnector"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
        "StandardOutput": "journal",
        "StandardError": "journal",
        "KillSignal": "SIGTERM",
    }.items():
        assert service[key] == [value], key
    # ProtectSystem=strict makes everything read-only but the workdir.
    assert service["ReadWritePaths"] == ["/var/lib/fxconnector"]
    assert service["StateDirectory"] == ["fxconnector"]


def test_exec_start_is_a_valid_run_command() -> None:
    argv = shlex.split(settings()["ExecStart"][0])
    assert argv[0] == INSTALLED
    args = build_parser().parse_args(argv[1:])
    assert args.handler is cmd_run
    assert args.config == Path("/etc/fxconnector/config.toml")
    assert args.workdir == "/var/lib/fxconnector"
    assert args.profile is None  # follows the config's broker kind: never the demo for a real one


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (systemd only); the unit is unchecked")
    program = Path(sys.executable).with_name("fxconnector")
    assert program.is_file(), f"{program}: the package is not installed in this environment"
    text = UNIT.read_text()
    assert text.count(INSTALLED) == 1
    unit = tmp_path / "fxconnector.service"
    unit.write_text(text.replace(INSTALLED, str(program)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    # verify exits 0 even for settings it ignores: any output at all is a finding.
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == "", done.stdout + done.stderr


def test_systemd_analyze_verify_reports_a_bad_setting(tmp_path: Path) -> None:
    """The check above can fail: a misspelt value is reported."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (systemd only)")
    program = Path(sys.executable).with_name("fxconnector")
    unit = tmp_path / "fxconnector.service"
    text = UNIT.read_text().replace(INSTALLED, str(program))
    unit.write_text(text.replace("NoNewPrivileges=yes", "NoNewPrivileges=maybe"))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert "NoNewPrivileges" in done.stderr or "maybe" in done.stderr, done.stderr


def test_systemd_analyze_security_rates_the_unit_ok(tmp_path: Path) -> None:
    """The hardening, as systemd scores it offline: exposure at most 2.0 of 10 ("OK")."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (systemd only)")
    program = Path(sys.executable).with_name("fxconnector")
    unit = tmp_path / "fxconnector.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(program)))
    done = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--offline" in done.stderr and "unrecognized" in done.stderr:
        pytest.skip("this systemd-analyze has no offline security check (systemd < 252)")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "Overall exposure level for fxconnector.service" in done.stdout
