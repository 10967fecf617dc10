"""`fxconnector audit`: check a store's bars, revisions, derived completeness and coverage; print
a table or JSON.

Rules: read-only, under the store's writer lock. The calendar and the store kind come from the
store's manifest (a contradicting flag is an error); a store written before manifests is audited
only with an explicit `--calendar`. A JSONL store is read file by file
(`JsonlScan`), so damage that stops the store from opening is still reported line by line; a
SQLite store is read through its port. Exit code 0 when every invariant holds, 1 when any is
broken, 2 on bad usage or when a connector holds the store. Missing minutes are reported but
are not broken invariants.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fxconnector.core.errors import ConfigError, ContractViolation
from fxconnector.core.time_geom import Timeframe, iso_utc, parse_timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.store.audit import AuditReport, AuditSource, DayCoverage, audit
from fxconnector.runtime.store.audit_sources import JsonlScan, StoreSource
from fxconnector.runtime.store.ssot_sqlite import SqliteStore
from fxconnector.tools.options import (
    CliSupport,
    add_store_flags,
    existing_store,
    now_ms,
    store_path,
    symbol,
    writer_lock,
)

EXIT_OK = 0
EXIT_BROKEN = 1
#: Problems printed in the table (the JSON carries every kept problem).
SHOWN = 20


def add_command(commands: argparse._SubParsersAction[Any], support: CliSupport) -> None:
    parser = commands.add_parser(
        "audit",
        help="check the store's bars, revisions and coverage",
        description="Check every stored bar against the contract (OHLC order, close_ms, "
        "event_ts, source, bucket alignment on the calendar's grid), every key's revision chain "
        "(0..n, no duplicate, each revision with a reason), every derived bar against its "
        "1m finals, and that every higher-timeframe bucket whose minutes are all final or quiet "
        "has its derived final; count closed/final/quiet/missing minutes per UTC day, from "
        "each symbol's first stored minute to its last (nothing was asked of the broker "
        "outside them; --to counts the minutes up to it). "
        "Exit 0 when every invariant holds, 1 when any is broken, 2 on bad usage or when a "
        "running connector holds the store. Missing minutes are reported but are gaps to "
        "repair, not broken invariants: alone they do not make the exit code 1.",
    )
    add_store_flags(parser)
    parser.add_argument("--symbol", metavar="SYM", help="audit one symbol (default: all)")
    parser.add_argument("--from", dest="from_", metavar="ISO", help="first open (or epoch ms)")
    parser.add_argument(
        "--to",
        metavar="ISO",
        help="end, exclusive (or epoch ms; default: each symbol's last stored minute)",
    )
    parser.add_argument(
        "--calendar",
        default=None,
        metavar="PROFILE",
        help="calendar profile (default: the store's manifest; needed only for a store written "
        "before manifests)",
    )
    parser.add_argument(
        "--timeframes",
        metavar="TF,TF",
        help="higher timeframes whose derived finals must be complete (default: those stored, "
        "else the config's default [bars] timeframes)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=lambda args: cmd_audit(args, support))


def cmd_audit(args: argparse.Namespace, support: CliSupport) -> int:
    path = store_path(args)
    only = symbol(args.symbol)
    from_ms = support.parse_time(args.from_, flag="--from") if args.from_ else None
    to_ms = support.parse_time(args.to, flag="--to") if args.to else None
    if from_ms is not None and to_ms is not None and to_ms <= from_ms:
        raise ConfigError("--to must be after --from")
    found = existing_store(path, args.store_kind, args.calendar, legacy_ok=True)
    profile, kind = found.profile, found.kind
    timeframes = _timeframes(args.timeframes)
    source: AuditSource
    with writer_lock(path):
        if kind == "jsonl":
            scan = JsonlScan(path)
            scan.open()
            source, close = scan, scan.close
        else:
            store = SqliteStore(path)
            store.open()
            source, close = StoreSource(store), store.close
    bar = support.progress_bar(f"audit {path}")
    try:
        report = audit(
            source,
            profile,
            symbol=only,
            from_ms=from_ms,
            to_ms=to_ms,
            until_ms=now_ms(),
            timeframes=timeframes,
            progress=bar.update,
        )
    finally:
        bar.finish()
        close()
    header = {
        "store": str(path),
        "store_kind": kind,
        "calendar": profile.name,
        "symbol": only,
        "from": None if from_ms is None else iso_utc(from_ms),
        "to": None if to_ms is None else iso_utc(to_ms),
    }
    if args.json:
        sys.stdout.write(encode(as_json(report, header)).decode() + "\n")
    else:
        sys.stdout.write(as_table(report, header))
    return EXIT_OK if report.ok else EXIT_BROKEN


def _timeframes(text: str | None) -> list[Timeframe] | None:
    if text is None:
        return None
    try:
        return [parse_timeframe(part.strip()) for part in text.split(",") if part.strip()]
    except ContractViolation as exc:
        raise ConfigError(f"--timeframes: {exc}") from None


def as_json(report: AuditReport, header: dict[str, Any]) -> dict[str, Any]:
    """The report as one JSON-ready object (keys are encoded sorted)."""
    return {
        **header,
        "ok": report.ok,
        "series": report.series,
        "coverage": report.coverage,
        "totals": _totals(report),
        "missing_minutes": report.missing_minutes,
        "problems_total": report.problems_total,
        "problem_counts": report.problem_counts,
        "problems": [
            {
                "rule": p.rule,
                "symbol": p.symbol,
                "tf": p.tf,
                "open_ms": p.open_ms,
                "open": p.open_iso,
                "rev": p.rev,
                "message": p.message,
                "where": p.where,
            }
            for p in report.problems
        ],
    }


def _totals(report: AuditReport) -> dict[str, int]:
    return {
        "keys": sum(s.keys for s in report.series),
        "records": sum(s.records for s in report.series),
        "revised": sum(s.revised for s in report.series),
        "final": sum(d.final for d in report.coverage),
        "quiet": sum(d.quiet for d in report.coverage),
        "missing": report.missing_minutes,
        "closed": sum(d.closed for d in report.coverage),
    }


def as_table(report: AuditReport, header: dict[str, Any]) -> str:
    """Coverage per day and symbol, bar counts, and the problems, for people."""
    scope = header["symbol"] or "all"
    span = f"{header['from'] or 'start'}..{header['to'] or 'end'}"
    lines = [
        f"audit store={header['store']} kind={header['store_kind']} "
        f"calendar={header['calendar']} symbol={scope} range={span}",
        f"{'date':<10}  {'symbol':<8}  {'final':>7}  {'quiet':>7}  {'missing':>7}  {'closed':>7}",
    ]
    lines += [_row(day.date, day) for day in report.coverage]
    totals = _totals(report)
    if report.coverage:
        total = DayCoverage(
            "total", "", totals["final"], totals["quiet"], totals["missing"], totals["closed"]
        )
        lines.append(_row("total", total))
    else:
        lines.append("(no 1m bars or fetched intervals: no coverage to show)")
    by_symbol: dict[str, list[str]] = {}
    for series in report.series:
        by_symbol.setdefault(series.symbol, []).append(f"{series.tf}={series.keys}")
    for name, parts in by_symbol.items():
        lines.append(f"bars {name}: {' '.join(parts)}")
    lines.append(f"keys={totals['keys']} records={totals['records']} revised={totals['revised']}")
    if report.ok:
        lines.append("problems: none")
    else:
        counts = " ".join(f"{rule}={n}" for rule, n in report.problem_counts.items())
        lines.append(f"problems: {report.problems_total} ({counts})")
        for p in report.problems[:SHOWN]:
            where = f" [{p.where}]" if p.where else ""
            lines.append(
                f"  {p.rule}  {p.symbol} {p.tf or '-'} {p.open_iso or '-'} "
                f"rev={'-' if p.rev is None else p.rev}: {p.message}{where}"
            )
        if report.problems_total > SHOWN:
            lines.append(f"  ... and {report.problems_total - SHOWN} more (--json lists more)")
    verdict = "ok: every invariant holds" if report.ok else "FAILED: invariants broken"
    lines.append(
        f"result: {verdict}; missing minutes: {report.missing_minutes} "
        "(reported, not an invariant failure)"
    )
    return "\n".join(lines) + "\n"


def _row(label: str, day: DayCoverage) -> str:
    return (
        f"{label:<10}  {day.symbol:<8}  {day.final:>7}  {day.quiet:>7}  "
        f"{day.missing:>7}  {day.closed:>7}"
    )
