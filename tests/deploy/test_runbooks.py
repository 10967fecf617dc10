"""The runbooks' configs and commands, as an operator copies them, loaded and run.

Each runbook (deploy/runbooks/fxcm.md, oanda.md) holds fenced ```toml blocks whose first line
names the file (`# /etc/fxconnector/config.toml`, `# /etc/fxconnector/secrets.toml`) and a ```sh
block with the `fxconnector run` command. The fast tests load those files with the real loader:
a real broker gets the `fx` profile, never the demo's, and the secrets file has the keys the
broker reads. The slow tests run the runbook's command with the runbook's two files against the
stand-in FXCM SDK and the local v20 server, changing only what the runbook itself documents
(`--set` for the server's URLs or the interpreter, the secrets' values) and, so that the run
does not depend on the day of the week, the calendar (`always_open`) and a short lookback; the
checks are those of tests/app/test_run_brokers.py.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fxconnector.app.cli_run import cmd_run
from fxconnector.app.main import build_parser
from fxconnector.config.loader import load_config
from fxconnector.config.secrets import load_secrets
from fxconnector.core.errors import ConfigError
from fxconnector.core.time_geom import MINUTE_MS
from tests.app.connector import Connector
from tests.app.test_run_brokers import (
    FXCM_PASSWORD,
    FXCM_USER,
    LOOKBACK_MINS,
    OANDA_SEED,
    OANDA_TICKS_PER_MINUTE,
    OANDA_TOKEN,
    READY_WITHIN_S,
    SYMBOLS,
    Served,
    V20Feed,
    _load_standin_world,
    check_run,
    clean_environment,
    floor_minute,
    standin_interpreter,
    wall_ms,
)
from tests.runtime.ingest.broker.oanda.v20_server import V20Server

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "deploy" / "runbooks"
CONFIG = "/etc/fxconnector/config.toml"
SECRETS = "/etc/fxconnector/secrets.toml"
SECRET_KEYS = {"fxcm": {"fxcm_user", "fxcm_password"}, "oanda": {"oanda_token"}}
_FENCE = re.compile(r"^( *)```(?P<lang>\w*)\n(?P<body>.*?)^\1```", re.MULTILINE | re.DOTALL)


class Runbook:
    """The files and the run command of one runbook."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.text = (RUNBOOKS / f"{kind}.md").read_text()
        self.files: dict[str, str] = {}
        self.commands: list[list[str]] = []
        for match in _FENCE.finditer(self.text):
            indent = len(match.group(1))
            body = "\n".join(line[indent:] for line in match["body"].splitlines()) + "\n"
            if match["lang"] == "toml":
                first = body.splitlines()[0]
                if first.startswith("# /"):
                    name = first[2:].split()[0]
                    assert name not in self.files, f"{kind}.md names {name} twice"
                    self.files[name] = body
            elif match["lang"] == "sh":
                shlex.split(body, comments=True)  # the whole block's quoting is valid
                for command in body.replace("\\\n", " ").splitlines():
                    argv = shlex.split(command, comments=True)
                    if argv[:2] == ["fxconnector", "run"]:
                        self.commands.append(argv)

    def file(self, name: str) -> str:
        assert name in self.files, f"{self.kind}.md has no ```toml block for {name}"
        return self.files[name]

    def run_command(self) -> list[str]:
        """The runbook's first `fxconnector run` command (the one to install)."""
        assert self.commands, f"{self.kind}.md has no `fxconnector run` command"
        return self.commands[0]


def write_files(runbook: Runbook, where: Path, secrets: dict[str, str]) -> tuple[Path, Path]:
    """The runbook's config and secrets files in `where`: the secrets' values are `secrets`."""
    config = where / "config.toml"
    config.write_text(runbook.file(CONFIG))
    shown = tomllib.loads(runbook.file(SECRETS))
    assert set(shown) == set(secrets), (runbook.kind, set(shown))
    secrets_file = where / "secrets.toml"
    secrets_file.write_text("".join(f'{key} = "{value}"\n' for key, value in secrets.items()))
    secrets_file.chmod(0o600)
    return config, secrets_file


def run_arguments(runbook: Runbook, config: Path) -> list[str]:
    """The runbook's command for `Connector` (which adds its own --workdir and --http)."""
    argv = runbook.run_command()[2:]
    out: list[str] = []
    pairs = iter(argv)
    for arg in pairs:
        if arg in ("--workdir", "--http"):
            next(pairs)
        elif arg == "--config":
            assert next(pairs) == CONFIG
            out += ["--config", str(config)]
        else:
            out.append(arg)
    return out


@pytest.mark.parametrize("kind", ["fxcm", "oanda"])
def test_runbook_config_gets_the_fx_profile(tmp_path: Path, kind: str) -> None:
    runbook = Runbook(kind)
    values = {key: f"value-of-{key}" for key in SECRET_KEYS[kind]}
    config_path, secrets_path = write_files(runbook, tmp_path, values)
    config = load_config(config_path)
    assert config.broker.kind == kind
    assert config.secrets_file == SECRETS
    # Not the demo's: the New York calendar, the real brokers' history budget.
    assert config.calendar.profile == "fx_ny"
    assert config.broker.history_requests_per_min == 30
    assert config.broker.startup_lookback_mins == 1440
    assert config.http.bind.startswith("127.0.0.1:")
    secrets = load_secrets(secrets_path, environ={})
    assert set(secrets.known()) == SECRET_KEYS[kind]
    # The command the runbook (and the systemd unit) runs: no profile, the installed paths.
    command = runbook.run_command()
    args = build_parser().parse_args(command[1:])
    assert args.handler is cmd_run
    assert args.profile is None
    assert args.config == Path(CONFIG)
    assert args.workdir == "/var/lib/fxconnector"
    with pytest.raises(ConfigError, match="--profile demo cannot run the real broker"):
        load_config(config_path, profile="demo")


@pytest.mark.parametrize("kind", ["fxcm", "oanda"])
def test_runbook_commands_parse(kind: str) -> None:
    parser = build_parser()
    for command in Runbook(kind).commands:
        args = parser.parse_args(command[1:])
        assert args.handler is cmd_run
        for text in args.settings:
            assert "=" in text


def _date_independent() -> list[str]:
    """The calendar and lookback of tests/app/test_run_brokers.py (any day, a short run)."""
    return [
        "--set",
        "calendar.profile=always_open",
        "--set",
        f"broker.startup_lookback_mins={LOOKBACK_MINS}",
        "--set",
        "broker.symbols=[" + ",".join(f'"{s}"' for s in SYMBOLS) + "]",
    ]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_fxcm_runbook_runs_against_the_standin_sdk(tmp_path: Path) -> None:
    runbook = Runbook("fxcm")
    python, world_env = standin_interpreter(tmp_path)
    world = _load_standin_world().World(world_env)

    def served(symbol: str, from_ms: int, to_ms: int) -> dict[int, Served]:
        instrument = f"{symbol[:3]}/{symbol[3:]}"
        candles = world.candles(instrument, from_ms, to_ms - MINUTE_MS, to_ms, False)
        return {c[0]: (c[1], c[2], c[3], c[4], c[9]) for c in candles}

    config, secrets = write_files(
        runbook, tmp_path, {"fxcm_user": FXCM_USER, "fxcm_password": FXCM_PASSWORD}
    )
    settings = [
        "--set",
        f"secrets_file={secrets}",
        "--set",
        f"broker.fxcm.python={python}",
        *_date_independent(),
    ]
    started_ms = wall_ms()
    connector = Connector(
        tmp_path / "var",
        *run_arguments(runbook, config),
        *settings,
        env=clean_environment(),  # the credentials come from the runbook's secrets file only
        ready_within_s=READY_WITHIN_S,
    )
    try:
        check_run(
            connector,
            kind="fxcm",
            started_ms=started_ms,
            served=served,
            secrets=(FXCM_PASSWORD, FXCM_USER),
        )
    finally:
        connector.cleanup()


@pytest.fixture
def runbook_v20() -> Iterator[tuple[V20Server, dict[str, Any]]]:
    """The local v20 server for the runbook's own account id."""
    oanda = tomllib.loads(Runbook("oanda").file(CONFIG))["broker"]["oanda"]
    with V20Server(token=OANDA_TOKEN, account_id=oanda["account_id"]) as server:
        yield server, oanda


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_oanda_runbook_runs_against_the_local_v20_server(
    tmp_path: Path, runbook_v20: tuple[V20Server, dict[str, Any]]
) -> None:
    v20, shown = runbook_v20
    runbook = Runbook("oanda")
    # The runbook's way to point the files at another server, as it documents it.
    documented = [c for c in runbook.commands if any("rest_url=" in a for a in c)]
    assert documented, "oanda.md documents no --set for the server's URLs"
    assert "--set" in documented[0]
    feed = V20Feed(v20, OANDA_SEED, OANDA_TICKS_PER_MINUTE)
    now = floor_minute(wall_ms())
    feed.start(now - 3 * 60 * MINUTE_MS, now + 15 * MINUTE_MS)
    config, secrets = write_files(runbook, tmp_path, {"oanda_token": OANDA_TOKEN})
    settings = [
        "--set",
        f"secrets_file={secrets}",
        "--set",
        f"broker.oanda.rest_url={v20.url}",
        "--set",
        f"broker.oanda.stream_url={v20.url}",
        *_date_independent(),
    ]
    started_ms = wall_ms()
    connector = Connector(
        tmp_path / "var",
        *run_arguments(runbook, config),
        *settings,
        env=clean_environment(),
        ready_within_s=READY_WITHIN_S,
    )
    try:
        check_run(
            connector,
            kind="oanda",
            started_ms=started_ms,
            served=feed.served,
            secrets=(OANDA_TOKEN,),
        )
    finally:
        connector.cleanup()
        feed.stop()
    streams = v20.requests_of("stream")
    assert streams
    assert all(r.path == f"/v3/accounts/{shown['account_id']}/pricing/stream" for r in streams)
    candles = v20.requests_of("candles")
    assert candles
    assert all(r.query["price"] == shown["price"] for r in candles)
    assert all(r.authorization == f"Bearer {OANDA_TOKEN}" for r in v20.requests)
