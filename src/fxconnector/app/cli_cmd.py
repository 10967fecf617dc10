"""`fxconnector cmd NAME`: send a command to the running connector, or run it directly.

Rules: flags are named after the commands_v1 fields (`--symbols EURUSD,GBPUSD`,
`--window-hours 6`, `--repair`, `--symbol`, `--from`/`--to` (ISO) for the ms fields, `--tf`,
`--bars`, `--lookback-mins`); the command is validated against the schema before it is sent.
With a connector running (its control socket in the workdir) the command goes there; with none,
it runs here against the store under the writer lock. Exit 0 done, 1 failed, 2 bad usage or
refused. `--json` prints the final state as one JSON object.
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

from fxconnector.app.composition import build
from fxconnector.app.progress import ProgressBar
from fxconnector.app.timeparse import parse_time_ms
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

#: Which flags each command takes (and only those).
FIELDS: dict[CommandName, tuple[str, ...]] = {
    CommandName.WARMUP: ("symbols", "lookback_mins"),
    CommandName.BACKFILL: ("symbol", "from_ms", "to_ms"),
    CommandName.TAIL_GUARD: ("symbols", "window_hours", "repair"),
    CommandName.REPUBLISH_TAIL: ("symbol", "tf", "bars"),
    CommandName.REBUILD_DERIVED: ("symbol", "from_ms", "to_ms"),
}


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "cmd",
        help="run a command (warmup, backfill, tail_guard, republish_tail, rebuild_derived)",
        description="Send a command to the connector running in --workdir, or run it directly "
        "against the store when none runs. Flags are the command's fields.",
    )
    parser.add_argument("name", help=" | ".join(n.value for n in CommandName))
    parser.add_argument("--workdir", default=None, help="the connector's workdir (default var)")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--profile", default="demo", choices=PROFILES)
    parser.add_argument("--symbols", default=None, help="comma list")
    parser.add_argument("--symbol", default=None)
    parser.add_argument("--lookback-mins", dest="lookback_mins", type=int, default=None)
    parser.add_argument("--window-hours", dest="window_hours", type=int, default=None)
    parser.add_argument("--repair", action="store_true", default=None)
    parser.add_argument("--from", dest="from_ms", default=None, help="ISO-8601 or epoch ms")
    parser.add_argument("--to", dest="to_ms", default=None, help="ISO-8601 or epoch ms")
    parser.add_argument("--tf", default=None)
    parser.add_argument("--bars", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--no-wait",
        dest="no_wait",
        action="store_true",
        help="return once the connector accepted the command",
    )
    parser.set_defaults(handler=cmd_cmd)


def build_command(args: argparse.Namespace) -> dict[str, Any]:
    """The commands_v1 payload from the flags; ConfigError on bad usage."""
    try:
        name = CommandName(args.name)
    except ValueError:
        known = ", ".join(n.value for n in CommandName)
        raise ConfigError(f"unknown command {args.name!r} (known: {known})") from None
    fields = FIELDS[name]
    given = {
        f
        for f in (
            "symbols",
            "symbol",
            "lookback_mins",
            "window_hours",
            "repair",
            "from_ms",
            "to_ms",
            "tf",
            "bars",
        )
        if getattr(args, f) is not None
    }
    extra = given - set(fields)
    if extra:
        flags = ", ".join(f"--{f.replace('_ms', '').replace('_', '-')}" for f in sorted(extra))
        raise ConfigError(f"{name.value} takes no {flags}")
    body: dict[str, Any] = {}
    for field in fields:
        value = getattr(args, field)
        if field == "repair":
            body[field] = bool(value)
            continue
        if value is None:
            flag = "--" + field.replace("_ms", "").replace("_", "-")
            raise ConfigError(f"{name.value} needs {flag}")
        if field == "symbols":
            value = [s.strip() for s in value.split(",") if s.strip()]
        elif field in ("from_ms", "to_ms"):
            value = parse_time_ms(value, flag="--" + field.removesuffix("_ms"))
        body[field] = value
    payload = {
        "cmd": name.value,
        "req_id": uuid.uuid4().hex[:12],
        "ts": time.time_ns() // 1_000_000,
        "args": body,
    }
    checked = validate_command(payload)
    if checked.value is None:
        problem = checked.problems[0]
        raise ConfigError(f"{name.value}: {problem.message} at {problem.path}")
    return payload


def cmd_cmd(args: argparse.Namespace) -> int:
    payload = build_command(args)
    overrides = {"workdir": args.workdir} if args.workdir else {}
    config = load_config(args.config, profile=args.profile, overrides=overrides)
    path = Path(config.workdir) / SOCKET_NAME
    if path.exists():
        try:
            final = _remote(path, payload, wait=not args.no_wait)
        except ConnectionRefusedError:
            final = None  # a stale socket of a connector that died: run directly
        if final is not None:
            return _report(final, args.json)
    final = _direct(config, payload)
    return _report(final, args.json)


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
