"""`fxconnector order submit|status|cancel` and `fxconnector risk halt|reduce|resume`.

Rules: every request goes to the running `fxconnector exec` over its control socket (the
`[execution] socket_path` of the config, under `--workdir`; `--socket` names it directly),
through the Python client (`client.execution`). Nothing here touches the journal, Redis or a
broker. The answer is printed on stdout as one JSON object.
Exit codes: 0 done (an allowed intent, an order, a switched state), 3 the intent was denied by
risk (the answer says why), 2 bad input or a refused request (one line on stderr), 1 no exec
process answers (or not in time: the outcome of a submit is then unknown; submitting the same
intent again is safe). An intent without `ts` is stamped with the time of the submit (UTC ms):
the exec process denies an intent older than `[execution] max_intent_age_ms` (`stale_intent`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Final

import msgspec

from fxconnector.client.execution import ExecClient, ExecRequestError, ExecUnavailable
from fxconnector.config.loader import PROFILES, load_config
from fxconnector.core.errors import ConfigError
from fxconnector.core.model.exec_event import Decision
from fxconnector.core.utils.json_codec import encode

EXIT_OK: Final = 0
EXIT_UNAVAILABLE: Final = 1
EXIT_USAGE: Final = 2
EXIT_DENIED: Final = 3
EXIT_CODES: Final = """exit codes:
  0  done: the intent was allowed (its order is in the answer), or the state switched
  1  no exec process answers on the socket, or not in time (a submit's outcome is then
     unknown: submit the same intent again, it is never a second order)
  2  bad input, or the exec process refused the request (unknown intent, not ready, ...)
  3  the intent was denied by risk (the answer's `reason` says why)
"""


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=None, help="TOML config file")
    common.add_argument("--profile", default=None, choices=PROFILES)
    common.add_argument("--workdir", default=None, help="the exec process's workdir (default var)")
    common.add_argument(
        "--socket", type=Path, default=None, help="the control socket (default: from the config)"
    )
    common.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for the answer (default 10)"
    )
    return common


def add_order_command(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "order",
        help="submit, show or cancel an order (through the running `fxconnector exec`)",
        description="Talk to the running `fxconnector exec` over its control socket.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=type(parser)
    )
    common = _common()
    submit = actions.add_parser(
        "submit",
        parents=[common],
        help="submit an intent (intent_v1 JSON)",
        description="Submit one intent_v1 object. Safe to repeat: the same intent_id is "
        "never a second order. Without `ts`, the intent is stamped with now (UTC ms).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = submit.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, help="a file holding the intent (JSON object)")
    source.add_argument("--json", dest="json_text", help="the intent as a JSON object")
    submit.set_defaults(handler=cmd_order)
    for action, text in (("status", "show an intent's order"), ("cancel", "cancel an order")):
        sub = actions.add_parser(action, parents=[common], help=text, description=text + ".")
        sub.add_argument("intent_id", help="the intent's intent_id")
        sub.set_defaults(handler=cmd_order)


def add_risk_command(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "risk",
        help="halt, reduce or resume trading (through the running `fxconnector exec`)",
        description="Switch the trading state of every trader: halt (only cancels), reduce "
        "(only orders that reduce exposure), resume (back to the limits alone).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=type(parser)
    )
    common = _common()
    for action in ("halt", "reduce", "resume"):
        sub = actions.add_parser(action, parents=[common], help=f"{action} trading")
        sub.add_argument("--reason", required=True, help="why (journaled with the switch)")
        sub.set_defaults(handler=cmd_risk)


def socket_path(args: argparse.Namespace) -> Path:
    """`--socket`, else the config's `[execution] socket_path` (under `--workdir`)."""
    if args.socket is not None:
        return Path(args.socket)
    overrides = {"workdir": args.workdir} if args.workdir else {}
    config = load_config(args.config, profile=args.profile, overrides=overrides)
    return Path(config.execution.socket_path)


def read_intent(args: argparse.Namespace) -> dict[str, Any]:
    """The intent object of `--file` or `--json` (ConfigError: exit 2)."""
    if args.file is not None:
        try:
            text = Path(args.file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"--file {args.file}: cannot read it ({exc.strerror})") from None
        where = f"--file {args.file}"
    else:
        text = args.json_text.encode()
        where = "--json"
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{where}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a JSON object (an intent_v1), got JSON {value!r:.40}")
    return value


def stamped(intent: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """`intent` with `ts` set to `now_ms` when it has none (a given `ts` is kept as it is)."""
    return intent if "ts" in intent else {**intent, "ts": now_ms}


def cmd_order(args: argparse.Namespace) -> int:
    intent = (
        stamped(read_intent(args), time.time_ns() // 1_000_000) if args.action == "submit" else None
    )
    path = socket_path(args)
    try:
        with ExecClient(path, timeout_s=args.timeout) as client:
            if intent is not None:
                result = client.submit(intent)
            elif args.action == "status":
                result = client.status(args.intent_id)
            else:
                result = client.cancel(args.intent_id)
    except ExecRequestError as exc:
        return _refused(f"order {args.action}", exc)
    except ExecUnavailable as exc:
        return _unavailable(f"order {args.action}", exc)
    sys.stdout.write(encode(result).decode() + "\n")
    if result.decision is Decision.DENY:
        sys.stderr.write(
            f"fxconnector order {args.action}: denied: {result.reason}"
            + (f" ({result.detail})" if result.detail else "")
            + "\n"
        )
        return EXIT_DENIED
    return EXIT_OK


def cmd_risk(args: argparse.Namespace) -> int:
    path = socket_path(args)
    try:
        with ExecClient(path, timeout_s=args.timeout) as client:
            state = client.risk(args.action, args.reason)
    except ExecRequestError as exc:
        return _refused(f"risk {args.action}", exc)
    except ExecUnavailable as exc:
        return _unavailable(f"risk {args.action}", exc)
    sys.stdout.write(encode(state).decode() + "\n")
    return EXIT_OK


def _refused(what: str, exc: ExecRequestError) -> int:
    sys.stderr.write(f"fxconnector {what}: refused: {exc.code}: {exc.message}\n")
    return EXIT_USAGE


def _unavailable(what: str, exc: ExecUnavailable) -> int:
    sys.stderr.write(f"fxconnector {what}: failed: {exc}\n")
    return EXIT_UNAVAILABLE
