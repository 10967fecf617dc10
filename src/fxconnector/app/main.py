"""The `fxconnector` command line.

Rules: every subcommand prints its result on stdout; a usage or input error is one line on
stderr and exit code 2; an unexpected failure is exit code 1. Later subcommands (run, replay,
bars, cmd, audit, ...) plug in here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from fxconnector import __version__
from fxconnector import tools as tools_cli
from fxconnector.app import (
    cli_bars,
    cli_cmd,
    cli_exec,
    cli_export,
    cli_import,
    cli_order,
    cli_run,
    cli_smc,
    cli_status,
)
from fxconnector.app.progress import ProgressBar
from fxconnector.app.timeparse import parse_time_ms
from fxconnector.config.calendars import load_calendar, profile_names
from fxconnector.core.calendar import describe
from fxconnector.core.errors import ConfigError, ContractViolation, FxConnectorError
from fxconnector.core.time_geom import TIMEFRAMES, parse_timeframe
from fxconnector.core.utils.json_codec import encode

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fxconnector",
        description="FX market-data connector: broker ticks to final OHLCV bars on one surface.",
    )
    parser.add_argument("--version", action="version", version=f"fxconnector {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    time_cmd = commands.add_parser(
        "time",
        help="show the bucket and market state of a moment",
        description="Print the bucket of --tf containing --at and the calendar's market state, "
        "as one JSON object (times in UTC epoch ms).",
    )
    time_cmd.add_argument(
        "--at", required=True, help="ISO-8601 time (UTC if no offset) or epoch ms"
    )
    time_cmd.add_argument(
        "--tf", default="1m", help=f"timeframe ({' '.join(tf.value for tf in TIMEFRAMES)})"
    )
    time_cmd.add_argument("--calendar", default="fx_ny", help="calendar profile (default fx_ny)")
    time_cmd.add_argument("--symbol", default=None, help="symbol, for its group's daily breaks")
    time_cmd.set_defaults(handler=_cmd_time)
    cli_bars.add_commands(commands)
    cli_smc.add_command(commands)
    cli_run.add_command(commands)
    cli_cmd.add_command(commands)
    cli_status.add_command(commands)
    cli_export.add_command(commands)
    cli_import.add_command(commands)
    cli_exec.add_command(commands)
    cli_order.add_order_command(commands)
    cli_order.add_risk_command(commands)
    tools_cli.add_commands(commands, parse_time=parse_time_ms, progress_bar=ProgressBar)
    return parser


def _cmd_time(args: argparse.Namespace) -> int:
    at_ms = parse_time_ms(args.at, flag="--at")
    try:
        tf = parse_timeframe(args.tf)
    except ContractViolation as exc:
        raise ConfigError(f"--tf: {exc}") from None
    if args.calendar not in profile_names():
        raise ConfigError(
            f"--calendar: unknown profile {args.calendar!r} (known: {', '.join(profile_names())})"
        )
    now_ms = time.time_ns() // 1_000_000
    profile = load_calendar(args.calendar, now_ms=now_ms)
    calendar = profile.for_symbol(args.symbol) if args.symbol else profile.default
    answer = describe(at_ms, tf, calendar)
    sys.stdout.write(encode(answer).decode() + "\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `fxconnector` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_OK
    try:
        result: int = handler(args)
    except ConfigError as exc:
        sys.stderr.write(f"fxconnector {args.command}: error: {exc}\n")
        return EXIT_USAGE
    except FxConnectorError as exc:
        sys.stderr.write(f"fxconnector {args.command}: failed: {exc}\n")
        return EXIT_FAILED
    return result


def console() -> NoReturn:
    """The console script: `main()`, then exit with its code.

    After `run` everything is closed, flushed and durable, so the process ends at once instead
    of tearing down its heap (about a second on a busy machine, the larger part of a Ctrl-C).
    A reader that goes away (`fxconnector bars ... | head`) ends the command quietly, as it
    ends `cat`: no traceback, exit 141 (128 + SIGPIPE) as a shell reports it.
    """
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null so that does not fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.stderr.flush()
        os._exit(EXIT_BROKEN_PIPE)
    if sys.argv[1:2] == ["run"]:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    console()
