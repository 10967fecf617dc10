"""The config file: profiles, overrides, unknown keys by name, no secrets in the file."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from fxconnector.config.loader import load_config
from fxconnector.config.schema import Config
from fxconnector.core.errors import ConfigError
from fxconnector.core.time_geom import Timeframe


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fxconnector.toml"
    path.write_text(text)
    return path


def test_demo_profile_is_the_default() -> None:
    config = load_config()
    assert config.calendar.profile == "always_open"
    assert config.broker.kind == "sim"
    assert config.broker.symbols == ("EURUSD", "GBPUSD", "USDJPY")
    assert config.bars.timeframes[0] is Timeframe.M1
    assert config.http.bind == "127.0.0.1:8088"


def test_fx_profile_uses_the_new_york_calendar() -> None:
    config = load_config(profile="fx")
    assert config.calendar.profile == "fx_ny"
    assert config.broker.kind == "fxcm"


def test_file_then_overrides_win(tmp_path: Path) -> None:
    path = write(tmp_path, '[bars]\nprice = "mid"\n[http]\nbind = "127.0.0.1:9000"\n')
    config = load_config(path, overrides={"http.bind": "127.0.0.1:9100"})
    assert config.bars.price == "mid"
    assert config.http.bind == "127.0.0.1:9100"
    assert config.calendar.profile == "always_open"  # untouched keys keep the profile's value


def test_config_is_frozen() -> None:
    config = load_config()
    with pytest.raises(AttributeError):
        config.workdir = "elsewhere"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus = 1\n", "unknown key 'bogus'"),
        ("[bars]\ncolour = 'red'\n", "unknown key 'bars.colour'"),
        ("[broker.oanda]\ntoken = 'abc'\n", "unknown key 'broker.oanda.token'"),
        ("[bars]\ntimeframes = ['2m']\n", "bars.timeframes"),
        ("[bars]\ntimeframes = ['5m']\n", "must include 1m"),
        ("[bars]\ntimeframes = ['1m', '1m']\n", "twice"),
        ("[broker]\nsymbols = ['EURUSD', 'EURUSD']\n", "twice"),
        ("[broker]\nsymbols = ['eurusd']\n", "broker.symbols"),
        ("[surface]\nevents_maxlen = 100000\n", "surface.events_maxlen is gone"),
        ("[surface]\nevents_retention_s = 1\n", "surface.events_retention_s"),
        ("[surface]\ncluster = true\n", "cluster = true needs surface.redis_url"),
        ("[surface]\ncluster = true\nredis_url = 'unix:///r.sock'\n", "over TCP only"),
        ("[surface]\ncluster = true\nredis_url = 'redis://h:7000/2'\n", "database 0 only"),
        ("[surface]\nredis_url = 'redis://:hunter2@localhost:6379/0'\n", "secrets file"),
        ("[surface]\nredis_url = 'http://localhost'\n", "redis://"),
        ("[surface]\nredis_url = 'redis://[::1'\n", "surface.redis_url is not a valid URL"),
        ("[surface]\nredis_url = 'redis://localhost?foo=1'\n", "unknown option 'foo'"),
        ("[surface]\nredis_url = 'redis://localhost?db=x'\n", "surface.redis_url"),
        ("[http]\nbind = 'localhost'\n", "http.bind"),
        ("[ticks]\nmin_price = 10.0\nmax_price = 1.0\n", "ticks.min_price must not be above"),
        ("[ticks]\nmax_price = inf\n", "ticks.max_price"),
        ("[ticks]\nmax_volume = -5.0\n", "ticks.max_volume"),
        ("[bars\n", "not valid TOML"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_config(write(tmp_path, text))


def test_password_never_echoed_in_the_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[surface]\nredis_url = 'redis://user:hunter2@localhost:6379/0'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "hunter2" not in str(info.value)


def test_missing_file_and_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="unknown config profile 'prod'"):
        load_config(profile="prod")


def test_canonical_design_example_loads(tmp_path: Path) -> None:
    text = """
[calendar]
profile = "fx_ny"
[bars]
timeframes = ["1m", "5m", "15m", "30m", "1h", "4h", "1d"]
price = "bid"
open_mode = "first_tick"
volume = "ticks"
[store]
kind = "jsonl"
path = "var/ssot"
[surface]
redis_url = ""
namespace = "fxconnector"
events_retention_s = 300
preview_interval_ms = 250
[http]
bind = "127.0.0.1:8088"
[broker]
kind = "sim"
symbols = ["EURUSD", "GBPUSD", "USDJPY"]
[broker.oanda]
rest_url = "https://api-fxpractice.oanda.com"
stream_url = "https://stream-fxpractice.oanda.com"
account_id = ""
price = "B"
"""
    config = load_config(write(tmp_path, text))
    assert isinstance(config, Config)
    assert msgspec.structs.asdict(config.broker.oanda)["price"] == "B"


@pytest.mark.parametrize("kind", ["fxcm", "oanda"])
def test_a_real_broker_gets_the_fx_profile_not_the_demo(tmp_path: Path, kind: str) -> None:
    config = load_config(write(tmp_path, f'[broker]\nkind = "{kind}"\n'))
    demo = load_config(profile="demo")
    assert config.broker.kind == kind
    assert config.calendar.profile == "fx_ny"
    assert config.broker.history_requests_per_min == 30
    assert config.broker.startup_lookback_mins == 1440
    assert demo.broker.history_requests_per_min == 6000  # what a real broker must not inherit


def test_a_real_broker_named_by_an_override_gets_the_fx_profile() -> None:
    config = load_config(overrides={"broker.kind": "oanda"})
    assert config.calendar.profile == "fx_ny"
    assert config.broker.history_requests_per_min == 30


@pytest.mark.parametrize("kind", ["sim", "replay"])
def test_the_sim_and_replay_default_to_the_demo_profile(tmp_path: Path, kind: str) -> None:
    config = load_config(write(tmp_path, f'[broker]\nkind = "{kind}"\n'))
    assert config.broker.kind == kind
    assert config.calendar.profile == "always_open"


@pytest.mark.parametrize("kind", ["fxcm", "oanda"])
def test_demo_profile_with_a_real_broker_is_refused(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, f'[broker]\nkind = "{kind}"\n')
    with pytest.raises(ConfigError, match=f"--profile demo cannot run the real broker '{kind}'"):
        load_config(path, profile="demo")
    with pytest.raises(ConfigError, match="--profile demo"):
        load_config(profile="demo", overrides={"broker.kind": kind})
    assert load_config(path, profile="fx").calendar.profile == "fx_ny"


def test_every_path_is_absolute_once_loaded(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'secrets_file = "secrets.toml"\n[store]\npath = "../elsewhere/ssot"\n'
        '[calendar]\noverrides_path = "cal.json"\n[broker.replay]\npath = "/data/ticks"\n',
    )
    config = load_config(path, overrides={"workdir": "var"}, cwd=tmp_path / "clone")
    workdir = tmp_path / "clone" / "var"
    assert config.workdir == str(workdir)
    assert config.store.path == str(tmp_path / "clone" / "elsewhere" / "ssot")
    assert config.secrets_file == str(workdir / "secrets.toml")
    assert config.calendar.overrides_path == str(workdir / "cal.json")
    assert config.broker.replay.path == "/data/ticks"


def test_the_defaults_resolve_under_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.workdir == str(tmp_path / "var")
    assert config.store.path == str(tmp_path / "var" / "ssot")
    assert config.secrets_file == ""  # empty stays empty: environment only


def test_smc_section_is_closed_and_on_in_the_demo(tmp_path: Path) -> None:
    assert load_config(None, profile="demo").smc.enabled
    assert not load_config(None, profile="fx").smc.enabled
    chosen = load_config(
        write(tmp_path, '[smc]\ntimeframes = ["15m"]\n[smc.engine]\nswing_length = 3\n'),
        profile="demo",
    ).smc
    assert chosen.timeframes == (Timeframe.M15,)
    assert chosen.engine.swing_length_for(Timeframe.M15) == 3
    for text, key in [
        ("[smc]\nsnapshots = 3\n", "smc.snapshots"),
        ("[smc.engine]\nswing = 3\n", "smc.engine.swing"),
    ]:
        with pytest.raises(ConfigError, match=key):
            load_config(write(tmp_path, text), profile="demo")
