"""The `[execution]` section: closed, constrained, paths under the workdir, the demo's trader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fxconnector.app.exec_wiring import (
    call_timeout_s,
    fxcm_gateway,
    risk_limits,
    surface_url,
    traded_symbols,
)
from fxconnector.config.loader import load_config
from fxconnector.config.secrets import Secret, Secrets
from fxconnector.core.errors import ConfigError
from fxconnector.runtime.clock import SystemClock


def test_the_demo_profile_names_one_paper_trader(tmp_path: Path) -> None:
    config = load_config(None, overrides={"workdir": "w"}, cwd=tmp_path)
    execution = config.execution
    assert execution.gateway == "paper"
    assert execution.journal_dir == str(tmp_path / "w" / "execution")
    assert execution.socket_path == str(tmp_path / "w" / "exec.sock")
    assert traded_symbols(config) == ("EURUSD", "GBPUSD", "USDJPY")
    limits = risk_limits(config)
    usdjpy = limits.for_symbol("demo", "USDJPY")
    assert usdjpy is not None
    assert usdjpy.max_notional == 100_000_000.0  # quote currency: JPY
    assert limits.for_symbol("demo", "AUDUSD") is None
    assert limits.for_symbol("someone", "EURUSD") is None
    assert surface_url(config) == f"unix://{tmp_path / 'w' / 'redis' / 'redis.sock'}"


def test_the_fx_profile_knows_no_trader(tmp_path: Path) -> None:
    config = load_config(None, profile="fx", cwd=tmp_path)
    assert config.execution.traders == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[execution]\ncolour = 1\n", "unknown key 'execution.colour'"),
        (
            "[execution.traders.x.symbols.EURUSD]\nmax_units = 1\n",
            "unknown key 'execution.traders[...].symbols[...].max_units'",
        ),
        ("[execution]\ngateway = 'ib'\n", "execution.gateway"),
        ("[execution.traders.x.symbols.EURUSD]\nmax_units_per_order = 0\n", ">= 1"),
        ("[execution.traders.x.symbols.EURUSD]\nmax_daily_loss = -5.0\n", "> 0"),
        ("[execution.traders.'a b']\n", "execution.traders"),
        ("[execution.traders.x.symbols.eurusd]\n", "at `key` in `execution.traders[...].symbols`"),
    ],
)
def test_bad_execution_settings_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path, cwd=tmp_path)


def test_the_oanda_section_defaults_to_practice_hosts_and_takes_overrides(tmp_path: Path) -> None:
    config = load_config(None, cwd=tmp_path)
    oanda = config.execution.oanda
    assert (oanda.account_id, oanda.environment) == ("", "practice")
    assert oanda.urls() == (
        "https://api-fxpractice.oanda.com",
        "https://stream-fxpractice.oanda.com",
    )
    path = tmp_path / "c.toml"
    path.write_text(
        '[execution]\ngateway = "oanda"\n[execution.oanda]\naccount_id = "101-004-1234567-001"\n'
        'environment = "live"\nrequest_timeout_s = 2.5\n'
    )
    live = load_config(path, cwd=tmp_path).execution
    assert live.gateway == "oanda"
    assert live.oanda.account_id == "101-004-1234567-001"
    assert live.oanda.request_timeout_s == 2.5
    assert live.oanda.urls() == (
        "https://api-fxtrade.oanda.com",
        "https://stream-fxtrade.oanda.com",
    )
    path.write_text('[execution.oanda]\nrest_url = "http://127.0.0.1:1/"\n')
    local = load_config(path, cwd=tmp_path).execution.oanda
    assert local.urls() == ("http://127.0.0.1:1", "https://stream-fxpractice.oanda.com")


def test_the_fxcm_gateway_reads_its_section_and_its_credentials_only_from_the_secrets(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[execution]\ngateway = "fxcm"\n[execution.fxcm]\npython = "/opt/py37/bin/python"\n'
        'connection = "Demo"\nrequest_timeout_s = 5.0\npass_env = ["HTTPS_PROXY"]\n'
    )
    config = load_config(path, cwd=tmp_path)
    fxcm = config.execution.fxcm
    assert (config.execution.gateway, fxcm.python, fxcm.connection) == (
        "fxcm",
        "/opt/py37/bin/python",
        "Demo",
    )
    assert (fxcm.request_timeout_s, fxcm.pass_env) == (5.0, ["HTTPS_PROXY"])
    with pytest.raises(ConfigError, match="needs credentials"):
        fxcm_gateway(config, Secrets(), SystemClock())
    gateway = fxcm_gateway(
        config, Secrets(fxcm_user=Secret("u-1"), fxcm_password=Secret("pw-9")), SystemClock()
    )
    assert gateway.name == "fxcm"
    assert "pw-9" not in repr(gateway)
    assert "u-1" not in repr(gateway)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[execution.oanda]\ntoken = 'x'\n", "unknown key 'execution.oanda.token'"),
        ("[execution.oanda]\naccountid = '1'\n", "unknown key 'execution.oanda.accountid'"),
        ("[execution.oanda]\nenvironment = 'real'\n", "execution.oanda.environment"),
        ("[execution.oanda]\naccount_id = 'my account'\n", "execution.oanda.account_id"),
        ("[execution.oanda]\nrequest_timeout_s = 0\n", "> 0"),
        ("[execution.oanda]\nheartbeat_timeout_s = 1000\n", "<= 300"),
        ("[execution.fxcm]\nuser = 'me'\n", "unknown key 'execution.fxcm.user'"),
        ("[execution.fxcm]\npassword = 'x'\n", "unknown key 'execution.fxcm.password'"),
        ("[execution.fxcm]\nconnection = 'Live'\n", "execution.fxcm.connection"),
        ("[execution.fxcm]\nrequest_timeout_s = 0\n", "> 0"),
        ("[execution.fxcm]\npass_env = ['A B']\n", "execution.fxcm.pass_env"),
    ],
)
def test_bad_gateway_settings_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path, cwd=tmp_path)


@pytest.mark.parametrize(
    ("text", "bound_s"),
    [
        ("", 10.0),
        ('[execution]\ngateway = "oanda"\n', 10.0),
        ('[execution]\ngateway = "oanda"\n[execution.oanda]\nrequest_timeout_s = 8.0\n', 18.0),
        ('[execution]\ngateway = "fxcm"\n', 35.0),
        ('[execution]\ngateway = "fxcm"\n[execution.fxcm]\nrequest_timeout_s = 2.0\n', 10.0),
    ],
)
def test_the_engines_call_bound_never_cuts_the_gateways_own_timeout(
    tmp_path: Path, text: str, bound_s: float
) -> None:
    """A submit is UNKNOWN only after the gateway had its configured time (OANDA: two requests)."""
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert call_timeout_s(load_config(path, cwd=tmp_path)) == bound_s
