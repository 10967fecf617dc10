"""`fxconnector run`: the connector as a long-running process.

Rules: config = built-in profile < `--config` file < flags (`--http`, `--redis-url`,
`--workdir`, `--set KEY=VALUE`); the profile follows the broker kind unless `--profile` names
it (a real broker never runs on `demo`: config.loader); secrets from the environment or the
secrets file only. Prints the URL to open on stdout once serving; logs are JSON lines on stderr
with secrets redacted. SIGINT/SIGTERM stop it gracefully with exit code 0.
Exit codes are a contract (`EXIT_CODES`, shown by `--help`): 0 clean stop on a signal, 1 a
runtime failure, 2 bad usage or config (`app.main` maps ConfigError raised before the start);
a failure is one line on stderr naming what to fix, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import socket
import sys
import tomllib
import traceback
from pathlib import Path
from typing import Any, Final

from fxconnector.app import exec_child, logs
from fxconnector.app.composition import build
from fxconnector.app.lifecycle import run
from fxconnector.config.loader import PROFILES, load_config
from fxconnector.config.secrets import load_secrets
from fxconnector.core.errors import ConfigError, FxConnectorError, SymbolLeased
from fxconnector.runtime.clock import SystemClock

log = logging.getLogger("fxconnector.run")


EXIT_CODES: Final = """exit codes:
  0  stopped cleanly on SIGINT/SIGTERM (Ctrl-C)
  1  runtime failure after the config was accepted (the HTTP port is taken, the broker
     rejects the credentials, Redis or a child process fails, ...)
  2  bad usage or config (flags, config file, secrets, workdir, Redis URL, bind host), or
     a symbol of broker.symbols that another process of the namespace publishes
A failure is one line on stderr that names what to fix; the JSON log lines before it say more.
"""
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "run",
        help="run the connector (the demo by default)",
        description="Run the connector: broker -> pipeline -> SSOT -> Redis surface -> HTTP.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    parser.add_argument(
        "--with-exec",
        action="store_true",
        help="also run `fxconnector exec` (paper orders) as a supervised child (app.exec_child)",
    )
    parser.set_defaults(handler=cmd_run)


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port_text = bind.rpartition(":")
    if not port_text.isdigit() or not 0 < int(port_text) < 65_536:
        raise ConfigError(f"http bind {bind!r}: port must be 1..65535")
    return host.strip("[]"), int(port_text)


def make_workdir(workdir: str) -> None:
    """Create the workdir (ConfigError when it cannot be a folder)."""
    path = Path(workdir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"workdir {workdir}: not a folder (fix --workdir or workdir)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"workdir {workdir}: cannot create it ({exc.strerror})") from None


def bind_http(bind: str) -> socket.socket:
    """The HTTP socket, bound but not listening yet (connections wait for readiness).

    An unresolvable host or an address that is not this machine's is a ConfigError (exit 2);
    a port in use is a runtime failure (OSError, exit 1).
    """
    host, port = split_bind(bind)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(
            f"http bind {bind!r}: cannot resolve host {host!r} ({exc.strerror}); "
            "fix --http or [http] bind"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(
                f"http bind {bind!r}: {host!r} is not an address of this machine; "
                "fix --http or [http] bind"
            ) from None
        raise OSError(
            exc.errno,
            f"http bind {bind}: {exc.strerror}; stop what holds it or choose another "
            "--http HOST:PORT (make run HTTP=HOST:PORT)",
        ) from None
    return sock


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
    make_workdir(config.workdir)
    try:
        listener = bind_http(config.http.bind)
    except OSError as exc:
        return _failed(exc.strerror or str(exc))
    try:
        parts = build(config, secrets, SystemClock())
    except BaseException:
        listener.close()
        raise

    def announce(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if not args.with_exec:
            return await run(parts, listener=listener, stop=stop, announce=announce)
        child = asyncio.create_task(exec_child.supervise(exec_child.flags_of(args, config)))
        try:
            return await run(parts, listener=listener, stop=stop, announce=announce)
        finally:
            child.cancel()
            await asyncio.gather(child, return_exceptions=True)

    try:
        return asyncio.run(main())
    except SymbolLeased as exc:  # refused: the config overlaps another process's
        sys.stderr.write(f"fxconnector run: error: {exc}\n")
        return EXIT_USAGE
    except FxConnectorError as exc:  # a ConfigError too: after start it is a runtime failure
        return _failed(str(exc))
    except Exception as exc:  # a bug: the traceback goes to the log, one line to the operator
        logs.emit(
            log,
            logging.ERROR,
            "connector.crashed",
            error=repr(exc),
            traceback="".join(traceback.format_exception(exc)),
        )
        return _failed(f"{type(exc).__name__}: {exc} (a bug; see connector.crashed in the log)")


def _failed(message: str) -> int:
    sys.stderr.write(f"fxconnector run: failed: {message}\n")
    return EXIT_FAILED
