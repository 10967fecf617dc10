"""`fxconnector exec`: the execution process (DESIGN §16), crash-only, one writer per journal.

Rules:
- Config as for `run` (built-in profile < `--config` < flags), the `[execution]` section
  frozen and closed. The `paper`, `oanda` and `fxcm` gateways run (`oanda` needs
  `[execution.oanda] account_id` and the token secret, `fxcm` the FXCM credentials, checked
  before anything starts).
- Start = recovery (crash-only): take the journal's writer lock (a second exec process on the
  same journal is refused, exit 2), replay the journal into the core, reconcile every
  unfinished order with the gateway, then answer intents on the control socket. The socket is
  created only once the lock is held (a refused second process never touches the first one's
  socket) and answers `not_ready` until the first prices are read.
- Prices come from the public surface: `[surface] redis_url`, or with none the embedded Redis
  of the connector running in the same workdir (`WORKDIR/redis/redis.sock`). Without prices
  the process still runs: orders are denied `no_price`/`stale_price` until they come.
- Prints one line on stdout once it accepts intents (the socket path); logs are JSON lines on
  stderr. SIGINT/SIGTERM stop it (exit 0); SIGKILL at any moment loses nothing (the journal
  is fsynced before anything is sent or answered).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Final

from fxconnector.app import exec_child, logs
from fxconnector.app.cli_run import make_workdir, parse_setting
from fxconnector.app.exec_wiring import build_exec
from fxconnector.config.loader import PROFILES, load_config
from fxconnector.config.secrets import load_secrets
from fxconnector.core.errors import ConfigError, FxConnectorError, StoreLocked
from fxconnector.runtime.clock import SystemClock
from fxconnector.runtime.publish.embedded import MAX_SOCKET_PATH

log = logging.getLogger("fxconnector.exec")

EXIT_CODES: Final = """exit codes:
  0  stopped cleanly on SIGINT/SIGTERM (Ctrl-C)
  1  runtime failure after the config was accepted
  2  bad usage or config (flags, config file, a gateway this version cannot run, a socket
     path too long), or another exec process holds the journal
"""
#: Gateways the schema knows (DESIGN §16) and this version can run.
RUNNABLE_GATEWAYS: Final = ("paper", "oanda", "fxcm")


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "exec",
        help="run the execution process (paper orders in the demo)",
        description="Run the execution process: intents from the control socket -> risk -> "
        "journal -> gateway; events and positions published to the surface.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, default=None, help="TOML config file")
    parser.add_argument("--profile", default=None, choices=PROFILES)
    parser.add_argument("--workdir", default=None, help="folder for the journal and socket")
    parser.add_argument("--redis-url", default=None, help="Redis URL of the surface")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set execution.max_price_age_ms=5000",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.set_defaults(handler=cmd_exec)


def cmd_exec(args: argparse.Namespace) -> int:
    exec_child.die_with_parent()  # a child of `fxconnector run --with-exec`: dies with it
    overrides: dict[str, Any] = dict(parse_setting(text) for text in args.settings)
    if args.redis_url is not None:
        overrides["surface.redis_url"] = args.redis_url
    if args.workdir is not None:
        overrides["workdir"] = args.workdir
    config = load_config(args.config, profile=args.profile, overrides=overrides)
    gateway = config.execution.gateway
    if gateway not in RUNNABLE_GATEWAYS:
        raise ConfigError(
            f"execution.gateway {gateway!r} cannot run in this version: 'paper', 'oanda' and "
            "'fxcm' are implemented (see docs/runbook_execution.md)"
        )
    if not config.execution.traders:
        raise ConfigError(
            "execution.traders is empty: every intent would be denied; name at least one "
            "trader with its symbols (docs/execution.md)"
        )
    socket_path = Path(config.execution.socket_path)
    if len(str(socket_path)) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"execution.socket_path {socket_path} is longer than a unix socket path may be "
            f"({MAX_SOCKET_PATH}); choose a shorter workdir or socket_path"
        )
    secrets = load_secrets(Path(config.secrets_file) if config.secrets_file else None)
    logs.configure(args.log_level, secrets.values())
    make_workdir(config.workdir)
    process = build_exec(config, secrets, SystemClock())

    def announce(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        return await process.run(stop, announce)

    try:
        return asyncio.run(main())
    except StoreLocked as exc:
        sys.stderr.write(
            f"fxconnector exec: error: {exc}: another exec process writes this journal\n"
        )
        return 2
    except FxConnectorError as exc:
        sys.stderr.write(f"fxconnector exec: failed: {exc}\n")
        return 1
    except Exception as exc:  # a bug: the traceback goes to the log, one line to the operator
        logs.emit(
            log,
            logging.ERROR,
            "exec.crashed",
            error=repr(exc),
            traceback="".join(traceback.format_exception(exc)),
        )
        sys.stderr.write(
            f"fxconnector exec: failed: {type(exc).__name__}: {exc} (a bug; see exec.crashed "
            "in the log)\n"
        )
        return 1
