"""`fxconnector run`: the connector as a long-running process.

Rules: config = built-in profile < `--config` file < flags (`--http`, `--redis-url`,
`--workdir`, `--set KEY=VALUE`); the profile follows the broker kind unless `--profile` names
it (a real broker never runs on `demo`: config.loader); secrets from the environment or the
secrets file only. Prints the URL to open on stdout once serving; logs are JSON lines on stderr
with secrets redacted. SIGINT/SIGTERM stop it gracefully with exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tomllib
from pathlib import Path
from typing import Any

from fxconnector.app import logs
from fxconnector.app.composition import build
from fxconnector.app.lifecycle import run
from fxconnector.config.loader import PROFILES, load_config
from fxconnector.config.secrets import load_secrets
from fxconnector.core.errors import ConfigError
from fxconnector.runtime.clock import SystemClock


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "run",
        help="run the connector (the demo by default)",
        description="Run the connector: broker -> pipeline -> SSOT -> Redis surface -> HTTP.",
    )
    parser.add_argument("--config", type=Path, default=None, help="TOML config file")
    parser.add_argument(
        "--profile",
        default=None,
        choices=PROFILES,
        help="built-in defaults (default: fx for a real broker kind (fxcm, oanda), else demo)",
    )
    parser.add_argument("--http", default=None, help="HOST:PORT to serve on")
    parser.add_argument("--redis-url", default=None, help="Redis URL (default: embedded)")
    parser.add_argument("--workdir", default=None, help="folder for the store and runtime files")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set broker.oanda.rest_url=http://127.0.0.1:9000 "
        "(VALUE is read as TOML, else as a string; repeatable)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.set_defaults(handler=cmd_run)


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port_text = bind.rpartition(":")
    port = int(port_text)
    if not 0 < port < 65_536:
        raise ConfigError(f"http bind {bind!r}: port must be 1..65535")
    return host.strip("[]"), port


def parse_setting(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` of `--set`: VALUE as a TOML value (`30`, `["EURUSD"]`), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"--set {text!r}: expected KEY=VALUE, e.g. --set http.bind=127.0.0.1:9000"
        )
    try:
        return key.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), value


def cmd_run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = dict(parse_setting(text) for text in args.settings)
    if args.http is not None:
        overrides["http.bind"] = args.http
    if args.redis_url is not None:
        overrides["surface.redis_url"] = args.redis_url
    if args.workdir is not None:
        overrides["workdir"] = args.workdir
    config = load_config(args.config, profile=args.profile, overrides=overrides)
    secrets = load_secrets(Path(config.secrets_file) if config.secrets_file else None)
    logs.configure(args.log_level, secrets.values())
    host, port = split_bind(config.http.bind)
    Path(config.workdir).mkdir(parents=True, exist_ok=True)
    parts = build(config, secrets, SystemClock())

    def announce(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        return await run(parts, host=host, port=port, stop=stop, announce=announce)

    return asyncio.run(main())
