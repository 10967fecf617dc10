"""`fxconnector run`: the profile follows the broker kind; demo with a real broker is exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fxconnector.app.cli_run import parse_setting
from fxconnector.core.errors import ConfigError


@pytest.mark.parametrize("kind", ["fxcm", "oanda"])
def test_demo_profile_with_a_real_broker_exits_2_saying_why(tmp_path: Path, kind: str) -> None:
    config = tmp_path / f"{kind}.toml"
    config.write_text(f'[broker]\nkind = "{kind}"\n')
    done = subprocess.run(
        [
            *(sys.executable, "-m", "fxconnector.app.main", "run", "--profile", "demo"),
            *("--config", str(config), "--workdir", str(tmp_path / "var")),
            *("--http", "127.0.0.1:1"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"--profile demo cannot run the real broker '{kind}'" in lines[0]
    assert "--profile fx" in lines[0]
    assert not (tmp_path / "var").exists()  # refused before anything was created


def test_set_reads_toml_values_else_strings() -> None:
    assert parse_setting("broker.startup_lookback_mins=120") == (
        "broker.startup_lookback_mins",
        120,
    )
    assert parse_setting('broker.symbols=["EURUSD"]') == ("broker.symbols", ["EURUSD"])
    assert parse_setting("broker.oanda.rest_url=http://127.0.0.1:9/x") == (
        "broker.oanda.rest_url",
        "http://127.0.0.1:9/x",
    )
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_setting("no-equals-sign")
