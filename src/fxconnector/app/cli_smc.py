"""`fxconnector smc`: the SMC hints of one symbol/timeframe from the final bars of a store.

Rules: the engine runs over the store's final bars (latest revision of each) from the first one
on, so the hints are those of the live engine at every point: `--from` only filters what is
printed (hints with `confirm_ts >= from`), `--to` ends the run (bars that open before it).
Output: one canonical `smc_hint_v1` JSON line per hint (or CSV), ordered by confirm_ts. Bad input
is a ConfigError: one line on stderr, exit 2. Progress (minutes of bars covered) on stderr.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from fxconnector.app.cli_bars import DEFAULT_STORE
from fxconnector.app.progress import ProgressBar
from fxconnector.app.timeparse import parse_time_ms
from fxconnector.core.errors import ConfigError, ContractViolation
from fxconnector.core.model.bar import SYMBOL_PATTERN
from fxconnector.core.time_geom import MINUTE_MS, parse_timeframe
from fxconnector.runtime.store.factory import open_store
from fxconnector.smc import CSV_HEADER, SmcConfig, SmcEngine, csv_row, encode_hint
from fxconnector.tools.options import existing_store, writer_lock

#: Bars between two progress updates.
PROGRESS_EVERY = 4096


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    """Register `smc`."""
    smc = commands.add_parser(
        "smc",
        help="print the SMC hints of one symbol/timeframe from a store",
        description="Run the causal SMC engine (docs/smc.md) over the store's final bars and "
        "print its hints, one canonical JSON line each (or CSV), ordered by confirm_ts.",
    )
    smc.add_argument("--store", type=Path, default=DEFAULT_STORE)
    smc.add_argument(
        "--store-kind", default=None, choices=["jsonl", "sqlite"], help="default: the manifest's"
    )
    smc.add_argument("--symbol", required=True, help="symbol, e.g. EURUSD")
    smc.add_argument("--tf", required=True, help="timeframe")
    smc.add_argument(
        "--from",
        dest="from_",
        default=None,
        metavar="TIME",
        help="print hints confirmed from here (ISO or ms)",
    )
    smc.add_argument(
        "--to", default=None, metavar="TIME", help="end, exclusive: bars opening before it"
    )
    smc.add_argument("--format", default="jsonl", choices=["jsonl", "csv"])
    smc.add_argument(
        "--swing-length", type=int, default=None, help="bars each side of a swing (default 5)"
    )
    smc.set_defaults(handler=cmd_smc)


def cmd_smc(args: argparse.Namespace) -> int:
    if not re.fullmatch(SYMBOL_PATTERN, args.symbol):
        raise ConfigError(f"--symbol: {args.symbol!r} is not a symbol like EURUSD")
    try:
        tf = parse_timeframe(args.tf)
    except ContractViolation as exc:
        raise ConfigError(f"--tf: {exc}") from None
    from_ms = parse_time_ms(args.from_, flag="--from") if args.from_ else None
    to_ms = parse_time_ms(args.to, flag="--to") if args.to else None
    if from_ms is not None and to_ms is not None and to_ms <= from_ms:
        raise ConfigError("--to must be after --from")
    if args.swing_length is not None and args.swing_length < 1:
        raise ConfigError("--swing-length must be at least 1")
    config = SmcConfig() if args.swing_length is None else SmcConfig(swing_length=args.swing_length)
    if not args.store.is_dir():
        raise ConfigError(f"--store: {args.store} is not a store folder")
    found = existing_store(args.store, args.store_kind, None)
    store = open_store(found.kind, args.store)
    live = f"HTTP /api/smc?symbol={args.symbol}&tf={tf.value} for its live hints"
    with writer_lock(args.store, instead=live):
        report = store.open()
    for line in report.corrupt_lines:  # run without them, never silently
        sys.stderr.write(f"fxconnector smc: unreadable store line skipped: {line}\n")
    engine = SmcEngine(args.symbol, tf, config, grid=found.profile.for_symbol(args.symbol).day_grid)
    out = sys.stdout.buffer
    progress = ProgressBar(f"smc {args.symbol} {tf.value}")
    last = store.last_open_ms(args.symbol, tf)
    try:
        if args.format == "csv":
            out.write(CSV_HEADER.encode())
        first: int | None = None
        for count, stored in enumerate(store.bars(args.symbol, tf, None, to_ms), start=1):
            bar = stored.event()
            if first is None:
                first = bar.open_ms
            for hint in engine.update(bar):
                if from_ms is not None and hint.confirm_ts < from_ms:
                    continue
                if args.format == "csv":
                    out.write(csv_row(hint).encode())
                else:
                    out.write(encode_hint(hint) + b"\n")
            if count % PROGRESS_EVERY == 0 and last is not None:
                end = min(last, to_ms) if to_ms is not None else last
                progress.update(
                    (bar.open_ms - first) // MINUTE_MS, max((end - first) // MINUTE_MS, 1)
                )
        if engine.last_close_ms is not None and first is not None:
            covered = (engine.last_close_ms + 1 - first) // MINUTE_MS
            progress.update(covered, covered)
        out.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        # Python flushes stdout again at exit; point it at /dev/null so that is silent.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        progress.finish()
        store.close()
    return 0
