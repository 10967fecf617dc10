"""`fxconnector cmd NAME`: send a command to the running connector, or run it directly.

Rules: one subcommand per command, its flags generated from the commands_v1 schema
(`command_flags`); the command is validated against the schema before it is sent. With a
connector running (its control socket in the workdir) the command goes there; with none, it
runs here against the store under the writer lock, except a command that needs the running
connector (`NEEDS_CONNECTOR`), which says so. Exit 0 done, 1 failed, 2 bad usage, refused or
no connector for such a command. `--json` prints the final state as one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from fxconnector.app.command_flags import CommandSpec, add_flags, command_args, command_specs
from fxconnector.app.composition import build
from fxconnector.app.progress import ProgressBar
from fxconnector.config.loader import PROFILES, load_config
from fxconnector.config.secrets import load_secrets
from fxconnector.core.errors import ConfigError, StoreLocked
from fxconnector.core.model.command import CommandName
from fxconnector.core.model.status import CommandState
from fxconnector.core.time_geom import MINUTE_MS
from fxconnector.core.utils.json_codec import encode
from fxconnector.core.validation.validator import validate_command
from fxconnector.runtime.clock import SystemClock
from fxconnector.runtime.ingest.commands.control import SOCKET_NAME
from fxconnector.runtime.ingest.commands.runner import CommandRunner
from fxconnector.runtime.publish.sink import CountingSink

#: Commands that act on the running connector itself: without it they would do nothing.
NEEDS_CONNECTOR: dict[CommandName, str] = {
    CommandName.REPUBLISH_TAIL: "it re-sends finals through the running connector's surface",
}


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    specs = command_specs()
    listing = "\n".join(f"  fxconnector cmd {spec.usage()}" for spec in specs)
    parser = commands.add_parser(
        "cmd",
        help="run a command (" + ", ".join(spec.name for spec in specs) + ")",
        description="Send a command to the connector running in --workdir, or run it directly "
        "against the store when none runs (republish_tail needs the running connector). "
        "`fxconnector cmd NAME --help` shows one command's flags.",
        epilog=f"each command with its flags (from the commands_v1 schema):\n{listing}\n\n"
        "exit codes: 0 done (or accepted with --no-wait), 1 failed, 2 bad usage, refused, "
        "or no connector for a command that needs one",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workdir", default=None, help="the connector's workdir (default var)")
    common.add_argument("--config", type=Path, default=None, help="TOML config file")
    common.add_argument("--profile", default=None, choices=PROFILES)
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    common.add_argument(
        "--no-wait",
        dest="no_wait",
        action="store_true",
        help="return once the connector accepted the command",
    )
    names = parser.add_subparsers(
        dest="name", metavar="NAME", required=True, parser_class=type(parser)
    )
    for spec in specs:
        sub = names.add_parser(
            spec.name,
            parents=[common],
            help=spec.description,
            description=spec.description
            + (
                f" Needs the running connector: {NEEDS_CONNECTOR[CommandName(spec.name)]}."
                if CommandName(spec.name) in NEEDS_CONNECTOR
                else ""
            ),
        )
        add_flags(sub, spec)
        sub.set_defaults(handler=cmd_cmd, spec=spec)


def build_command(args: argparse.Namespace) -> dict[str, Any]:
    """The commands_v1 payload from the parsed flags; ConfigError when the schema refuses it."""
    spec: CommandSpec = args.spec
    payload = {
        "cmd": spec.name,
        "req_id": uuid.uuid4().hex[:12],
        "ts": time.time_ns() // 1_000_000,
        "args": command_args(spec, args),
    }
    checked = validate_command(payload)
    if checked.value is None:
        problem = checked.problems[0]
        raise ConfigError(f"{spec.name}: {problem.message} at {problem.path}")
    return payload


def cmd_cmd(args: argparse.Namespace) -> int:
    payload = build_command(args)
    overrides = {"workdir": args.workdir} if args.workdir else {}
    config = load_config(args.config, profile=args.profile, overrides=overrides)
    path = Path(config.workdir) / SOCKET_NAME
    final = None
    if path.exists():
        try:
            final = _remote(path, payload, wait=not args.no_wait)
        except ConnectionRefusedError:
            final = None  # a stale socket of a connector that died: run directly
    if final is not None:
        return _report(final, args.json)
    name = CommandName(payload["cmd"])
    if name in NEEDS_CONNECTOR:
        raise ConfigError(
            f"{name.value} needs the running connector ({NEEDS_CONNECTOR[name]}), and none "
            f"answers on {path}: start it with `fxconnector run --workdir {config.workdir}`"
        )
    return _report(_direct(config, payload), args.json)


def _remote(path: Path, payload: dict[str, Any], *, wait: bool) -> dict[str, Any]:
    bar = ProgressBar(payload["cmd"])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.sendall(encode({"command": payload, "wait": wait}) + b"\n")
        reader = sock.makefile("rb")
        for line in reader:
            message: dict[str, Any] = msgspec.json.decode(line)
            progress = message.get("progress")
            if message.get("state") == "running" and progress:
                bar.update(int(progress["done"]), int(progress["total"]) or 1)
                continue
            bar.finish()
            return message
    bar.finish()
    return {"state": "failed", "error": "the connector closed the control socket"}


def _direct(config: Any, payload: dict[str, Any]) -> dict[str, Any]:
    secrets = load_secrets(Path(config.secrets_file) if config.secrets_file else None)
    parts = build(config, secrets, SystemClock())
    try:
        opened = parts.store.open()
    except StoreLocked as exc:
        raise ConfigError(
            f"{exc}; the connector holds the store but its control socket does not answer"
        ) from None
    for line in opened.corrupt_lines:  # the command runs without them, never silently
        sys.stderr.write(f"fxconnector cmd: unreadable store line skipped: {line}\n")
    try:
        now = parts.clock.now_ms()
        start = {s: now - MINUTE_MS for s in config.broker.symbols}
        parts.make_pipeline(CountingSink(), start)
        runner = CommandRunner(parts.command_context(CountingSink()), parts.clock)
        command = validate_command(payload).value
        assert command is not None
        bar = ProgressBar(payload["cmd"])

        async def main() -> Any:
            await parts.broker.connect()
            try:
                return await runner.run(
                    command,
                    lambda last: bar.update(
                        last.progress.done if last.progress else 0,
                        (last.progress.total if last.progress else 0) or 1,
                    ),
                )
            finally:
                await parts.broker.close()

        final = asyncio.run(main())
        bar.finish()
        return {"state": final.state.value, "last_command": msgspec.to_builtins(final)}
    finally:
        parts.store.close()


def _report(final: dict[str, Any], as_json: bool) -> int:
    state = final.get("state")
    if as_json:
        sys.stdout.write(encode(final).decode() + "\n")
    else:
        last = final.get("last_command") or {}
        detail = final.get("error") or encode(last.get("result")).decode()
        sys.stdout.write(f"{state}: {detail}\n")
    if state in (CommandState.DONE.value, "accepted"):
        return 0
    if state == "refused":
        sys.stderr.write(f"fxconnector cmd: refused: {final.get('error')}\n")
        return 2
    return 1
