"""`fxconnector status`: a human summary of a running connector's /api/status."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import httpx

from fxconnector.config.schema import HttpConfig
from fxconnector.core.errors import ConfigError


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "status",
        help="summarise the running connector's status",
        description="Fetch /api/status and print a human summary.",
    )
    parser.add_argument("--http", default=HttpConfig().bind, help="HOST:PORT of the connector")
    parser.add_argument("--json", action="store_true", help="print the raw status_v2 JSON")
    parser.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    url = f"http://{args.http}/api/status"
    try:
        response = httpx.get(url, timeout=5.0)
    except httpx.HTTPError as exc:
        raise ConfigError(f"no connector answers at {url} ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise ConfigError(f"{url} answered {response.status_code}")
    if args.json:
        sys.stdout.write(response.text + "\n")
        return 0
    sys.stdout.write(summary(response.json(), time.time_ns() // 1_000_000))
    ready = httpx.get(f"http://{args.http}/api/health/ready", timeout=5.0)
    return 0 if ready.status_code == 200 else 1


def _ago(now_ms: int, ts_ms: int | None) -> str:
    if ts_ms is None:
        return "never"
    seconds = (now_ms - ts_ms) / 1000
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def _bound(bound_s: float | None) -> str:
    """The history plan's worst-case final lag, when the connector planned one."""
    return "" if bound_s is None else f", finals within {bound_s:g} s (planned)"


def summary(status: dict[str, Any], now_ms: int) -> str:
    """The lines a person wants to read first."""
    market = status["market"]
    broker = status["broker"]
    lines = [
        f"connector {status['version']} pid {status['process']['pid']} "
        f"symbols {', '.join(status['process']['symbols'])}",
        f"market    {'open' if market['is_open'] else 'closed'} ({market['calendar_tag']}); "
        f"next pause {market['next_pause_utc'] or '-'}, next open {market['next_open_utc'] or '-'}",
        f"broker    {broker['kind']} {broker['state']}, last tick "
        f"{_ago(now_ms, broker['last_tick_ts_ms'])}, reconnects {broker['reconnects']}"
        + _bound(broker.get("final_lag_bound_s")),
        f"surface   {status['surface']['state']}, backlog {status['surface']['backlog']}",
        f"ssot      {status['ssot']['state']}",
    ]
    for symbol, tfs in sorted(status["ssot"]["last_final_ms"].items()):
        last_1m = tfs.get("1m")
        coverage = status["ssot"]["coverage"].get(symbol, {})
        lines.append(
            f"  {symbol:8} last final 1m {_ago(now_ms, last_1m)}; 24h coverage final "
            f"{coverage.get('final', '-')} quiet {coverage.get('quiet', '-')} "
            f"missing {coverage.get('missing', '-')}"
        )
    preview = status["preview"]
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(preview["rejected"].items())) or "none"
    lines.append(f"ticks     late dropped {preview['late_ticks_dropped']}, rejected {rejected}")
    last = status.get("last_command")
    if last:
        progress = last.get("progress") or {}
        lines.append(
            f"command   {last['cmd']} {last['req_id']} {last['state']} "
            f"{progress.get('done', 0)}/{progress.get('total', 0)}"
        )
    repair = status.get("repair")
    if repair:
        run = repair["last_run"]
        done = (
            f"last {run['state']} {_ago(now_ms, run['finished_ms'] or run['started_ms'])}: fixed "
            f"{run['fixed_minutes']} min, republished {run['republished']}, still missing "
            f"{run['unresolved_minutes']} min"
            if run
            else "no run yet"
        )
        lines.append(
            f"repair    every {repair['interval_s']} s over {repair['window_hours']} h; {done}"
        )
    if status["degraded"]:
        lines.append("DEGRADED  " + ", ".join(status["degraded"]))
    for error in status["errors"][-5:]:
        lines.append(f"error     {error['code']}: {error['message']}")
    return "\n".join(lines) + "\n"
