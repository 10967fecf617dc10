"""`fxconnector status`: a human summary of a running connector's /api/status.

The summary counts every symbol by state and names the worst; up to `DETAILED_UP_TO` symbols,
each also gets its own line (from `/api/status?symbol=`). `--symbol S` prints one symbol's
detail, `--processes` one line per live process of the namespace (`/api/status/processes`).
When an execution process runs (`/api/exec`), one line says its gateway, trading state, open
orders and positions.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx

from fxconnector.config.schema import HttpConfig
from fxconnector.core.errors import ConfigError

#: Up to this many symbols, the summary has a line per symbol.
DETAILED_UP_TO = 20


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "status",
        help="summarise the running connector's status",
        description="Fetch /api/status and print a human summary.",
    )
    parser.add_argument("--http", default=HttpConfig().bind, help="HOST:PORT of the connector")
    parser.add_argument("--json", action="store_true", help="print the raw JSON")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--symbol", help="one symbol's detail (status_symbol_v1)")
    which.add_argument(
        "--processes",
        action="store_true",
        help="every live process of the connector's namespace, one line each",
    )
    parser.set_defaults(handler=cmd_status)


def _get(base: str, path: str, params: dict[str, str] | None = None) -> httpx.Response:
    url = f"{base}{path}"
    try:
        response = httpx.get(url, params=params, timeout=5.0)
    except httpx.HTTPError as exc:
        raise ConfigError(f"no connector answers at {url} ({type(exc).__name__})") from None
    if response.status_code != 200:
        try:
            error = response.json()["error"]
            why = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            why = response.text[:200]
        raise ConfigError(f"{url} answered {response.status_code} ({why})")
    return response


def cmd_status(args: argparse.Namespace) -> int:
    base = f"http://{args.http}"
    now_ms = time.time_ns() // 1_000_000
    if args.symbol is not None:
        response = _get(base, "/api/status", {"symbol": args.symbol})
        text = response.text + "\n" if args.json else symbol_line(response.json(), now_ms)
        sys.stdout.write(text)
        return 0
    if args.processes:
        response = _get(base, "/api/status/processes")
        found = response.json()["processes"]
        text = response.text + "\n" if args.json else processes_lines(found, now_ms)
        sys.stdout.write(text)
        return 0
    response = _get(base, "/api/status")
    if args.json:
        sys.stdout.write(response.text + "\n")
        return 0
    status = response.json()
    details = []
    if status["symbols"]["total"] <= DETAILED_UP_TO:
        served = _get(base, "/api/symbols").json()["symbols"]
        details = [_get(base, "/api/status", {"symbol": s}).json() for s in served]
    process = _get(base, "/api/exec").json()["process"]
    sys.stdout.write(summary(status, now_ms, details, process))
    ready = httpx.get(f"{base}/api/health/ready", timeout=5.0)
    return 0 if ready.status_code == 200 else 1


def _ago(now_ms: int, ts_ms: int | None) -> str:
    if ts_ms is None:
        return "never"
    # A moment written after this command read the clock is "0 s ago", never "-0 s ago".
    seconds = max(0.0, (now_ms - ts_ms) / 1000)
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def _bound(bound_s: float | None) -> str:
    """The history plan's worst-case final lag, when the connector planned one."""
    return "" if bound_s is None else f", finals within {bound_s:g} s (planned)"


def symbol_line(detail: dict[str, Any], now_ms: int) -> str:
    """One symbol's detail on one line."""
    coverage = detail["coverage"] or {}
    last_1m = detail["last_final_ms"].get("1m")
    return (
        f"  {detail['symbol']:8} {detail['state']:8} 1m final closed {_ago(now_ms, last_1m)}, "
        f"lag {detail['final_lag_ms'] // 1000} s; 24h coverage final "
        f"{coverage.get('final', '-')} quiet {coverage.get('quiet', '-')} "
        f"missing {coverage.get('missing', '-')}; underived {detail['underived']}\n"
    )


def processes_lines(processes: list[dict[str, Any]], now_ms: int) -> str:
    """One line per live process of the namespace."""
    if not processes:
        return "no live process in the namespace\n"
    lines = []
    for status in processes:
        counts = status["symbols"]
        lines.append(
            f"{status['process']['id']:24} {status['version']} as of {_ago(now_ms, status['ts'])}:"
            f" broker {status['broker']['state']}, surface {status['surface']['state']}, "
            f"symbols {counts['total']} ({counts['current']} current, {counts['lagging']} "
            f"lagging, {counts['stalled']} stalled, {counts['no_final']} no final)"
            + (f"; DEGRADED {', '.join(status['degraded'])}" if status["degraded"] else "")
        )
    return "\n".join(lines) + "\n"


def exec_line(process: dict[str, Any], now_ms: int) -> str:
    """The execution process (exec_process_v1) on one line."""
    own = [
        f"{process[key]} trader{'s' if process[key] != 1 else ''} {state}"
        for key, state in (("traders_halted", "HALTED"), ("traders_reducing", "REDUCING"))
        if process[key]
    ]
    return (
        f"exec      {process['gateway']} pid {process['pid']}, trading "
        f"{process['trading_state']}"
        + "".join(f", {text}" for text in own)
        + f"; open orders {process['open_orders']}, open positions "
        f"{process['open_positions']}, journal seq {process['journal_seq']} "
        f"(as of {_ago(now_ms, process['ts'])})"
    )


def summary(
    status: dict[str, Any],
    now_ms: int,
    details: Sequence[dict[str, Any]] = (),
    process: dict[str, Any] | None = None,
) -> str:
    """The lines a person wants to read first; `process`: the exec process, when one runs."""
    market = status["market"]
    broker = status["broker"]
    counts = status["symbols"]
    cover = counts["coverage"]
    lines = [
        f"connector {status['version']} process {status['process']['id']} "
        f"pid {status['process']['pid']}",
        f"market    {'open' if market['is_open'] else 'closed'} ({market['calendar_tag']}); "
        f"next pause {market['next_pause_utc'] or '-'}, next open {market['next_open_utc'] or '-'}",
        f"broker    {broker['kind']} {broker['state']}, last tick "
        f"{_ago(now_ms, broker['last_tick_ts_ms'])}, reconnects {broker['reconnects']}"
        + _bound(broker.get("final_lag_bound_s")),
        f"surface   {status['surface']['state']}, backlog {status['surface']['backlog']}",
        f"ssot      {status['ssot']['state']}",
        f"symbols   {counts['total']}: {counts['current']} current, {counts['lagging']} "
        f"lagging, {counts['stalled']} stalled, {counts['no_final']} no final yet; "
        f"{counts['with_missing_minutes']} with missing minutes, "
        f"{counts['with_underived']} with underived buckets",
        f"coverage  24h minutes of all symbols: final {cover['final']} quiet {cover['quiet']} "
        f"missing {cover['missing']} closed {cover['closed']}",
        f"finals    newest 1m final closed {_ago(now_ms, counts.get('newest_final_ms'))}",
    ]
    lines.extend(symbol_line(d, now_ms).rstrip("\n") for d in details)
    if not details:
        for worst in counts["worst"]:
            lines.append(
                f"  worst   {worst['symbol']:8} {worst['state']:8} lag "
                f"{worst['final_lag_ms'] // 1000} s, missing {worst['missing_minutes']} min, "
                f"underived {worst['underived']}"
            )
        if counts["worst"]:
            lines.append("          (one symbol's detail: fxconnector status --symbol SYMBOL)")
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
    if process is not None:
        lines.append(exec_line(process, now_ms))
    if status["degraded"]:
        lines.append("DEGRADED  " + ", ".join(status["degraded"]))
    for error in status["errors"][-5:]:
        lines.append(f"error     {error['code']}: {error['message']}")
    return "\n".join(lines) + "\n"
