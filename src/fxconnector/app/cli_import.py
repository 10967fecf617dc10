"""`fxconnector import`: recorded 1m candle files (FXCM yearly zips, HistData M1) into a store.

Rules: the candles become final 1m bars (`source=history`) through the backfill path
(`runtime/ingest/candle_import.py`), and the higher timeframes are derived from them. The store
is chosen as for a replay (`cli_bars.replay_identity`): by default the import's own,
`var/import/SYMBOL-CALENDAR`; another command's store only with `--append`; a manifest that
differs is refused. A file that names its price side (FXCM's `-bid-`/`-ask-`) must match the
store's `--price`. Bad input is one line and exit code 2; bad lines are an error or, with
`--on-bad-line skip`, counted in the summary. Progress (reading, then storing) on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any, cast, get_args

from fxconnector.app.cli_bars import DEFAULT_CALENDAR, IMPORT_ROOT, _symbol, replay_identity
from fxconnector.app.progress import ProgressBar
from fxconnector.app.timeparse import parse_time_ms
from fxconnector.core.builders.spec import BarSpec, OpenMode, PriceSide, VolumeMode
from fxconnector.core.errors import ConfigError
from fxconnector.core.time_geom import iso_utc
from fxconnector.runtime.ingest.broker.replay.candles import (
    CANDLE_FORMATS,
    BadLinePolicy,
    CandleFormat,
    read_candles,
)
from fxconnector.runtime.ingest.candle_import import import_candles
from fxconnector.runtime.store import manifest
from fxconnector.runtime.store.factory import open_store
from fxconnector.tools.options import writer_lock


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    """Register `import`."""
    cmd = commands.add_parser(
        "import",
        help="store recorded 1m candles (FXCM zipped CSV, HistData M1) as final bars",
        description="Read a 1m candle file (FXCM's zipped yearly CSV, HistData M1 ASCII) and "
        "store its candles as final 1m bars (source=history), deriving the higher timeframes.",
    )
    cmd.add_argument("path", type=Path, help="a candle file, or a zip holding one")
    cmd.add_argument("--symbol", required=True, help="symbol, e.g. GBPUSD")
    cmd.add_argument("--format", default="auto", choices=CANDLE_FORMATS)
    cmd.add_argument(
        "--from", dest="from_", default=None, metavar="TIME", help="start (ISO-8601 or epoch ms)"
    )
    cmd.add_argument(
        "--to", default=None, metavar="TIME", help="end, exclusive (ISO-8601 or epoch ms)"
    )
    cmd.add_argument(
        "--on-bad-line",
        default="error",
        choices=get_args(BadLinePolicy),
        help="error (default): stop at the first bad line; skip: count and skip them",
    )
    cmd.add_argument(
        "--price",
        default=None,
        choices=[p.value for p in PriceSide],
        help="the store's price side (default bid, or the file's own side)",
    )
    cmd.add_argument("--timeframes", default=None, help="comma list (default: all configured)")
    cmd.add_argument(
        "--calendar",
        default=None,
        help=f"calendar profile (default {DEFAULT_CALENDAR}, or the --store's manifest)",
    )
    cmd.add_argument(
        "--store",
        type=Path,
        default=None,
        help=f"the store to write (default {IMPORT_ROOT}/SYMBOL-CALENDAR, the import's own)",
    )
    cmd.add_argument(
        "--store-kind", default=None, choices=["jsonl", "sqlite"], help="default jsonl"
    )
    cmd.add_argument(
        "--append",
        action="store_true",
        help="write into a store that another command created (its manifest must match)",
    )
    cmd.set_defaults(handler=cmd_import, open_mode=None, volume=None)


def cmd_import(args: argparse.Namespace) -> int:
    symbol = _symbol(args.symbol)
    from_ms = parse_time_ms(args.from_, flag="--from") if args.from_ else None
    to_ms = parse_time_ms(args.to, flag="--to") if args.to else None
    if from_ms is not None and to_ms is not None and to_ms <= from_ms:
        raise ConfigError("--to must be after --from")
    reading = ProgressBar(f"read {args.path.name}")
    try:
        candles = read_candles(
            args.path,
            symbol,
            cast(CandleFormat, args.format),
            on_bad_line=cast(BadLinePolicy, args.on_bad_line),
            from_ms=from_ms,
            to_ms=to_ms,
            progress=reading.update,
        )
    finally:
        reading.finish()
    if candles.side is not None:
        if args.price is not None and args.price != candles.side:
            raise ConfigError(
                f"{args.path}: the file holds {candles.side} prices, not --price {args.price}"
            )
        target = args.store or IMPORT_ROOT / f"{symbol}-{args.calendar or DEFAULT_CALENDAR}"
        if manifest.read_manifest(target) is None:
            args.price = candles.side  # a new store takes the file's side
    if not candles.bars:
        raise ConfigError(f"{args.path}: no candles in the range (of {candles.rows} rows)")
    identity, path = replay_identity(args, symbol, origin="import")
    settings = identity.manifest
    if candles.side is not None and settings.price != candles.side:
        raise ConfigError(
            f"{args.path}: the file holds {candles.side} prices, the store {path} "
            f"{settings.price} prices"
        )
    spec = BarSpec(
        PriceSide(settings.price), OpenMode(settings.open_mode), VolumeMode(settings.volume)
    )
    store = open_store(settings.store_kind, path, identity=identity)
    with writer_lock(path):
        report = store.open()
    for torn in report.torn_tails:  # a crash's torn last line, truncated: said, never silent
        sys.stderr.write(f"fxconnector import: torn store line truncated: {torn}\n")
    for line in report.corrupt_lines:
        sys.stderr.write(f"fxconnector import: unreadable store line skipped: {line}\n")
    storing = ProgressBar(f"import {symbol}")
    try:
        result = asyncio.run(
            import_candles(
                symbol,
                candles.bars,
                calendar=identity.calendar.for_symbol(symbol),
                timeframes=settings.timeframes,
                spec=spec,
                store=store,
                now_ms=time.time_ns() // 1_000_000,
                from_ms=from_ms,
                to_ms=to_ms,
                progress=storing.update,
            )
        )
    finally:
        storing.finish()
        store.close()
    fetched = result.range
    refused = ",".join(f"{k}:{v}" for k, v in sorted(result.refused.items())) or "none"
    finals = ",".join(f"{k}:{v}" for k, v in result.finals.items()) or "none"
    revisions = ",".join(f"{k}:{v}" for k, v in result.revisions.items()) or "none"
    sys.stdout.write(
        f"import symbol={symbol} format={candles.format} from={iso_utc(fetched.from_ms)} "
        f"to={iso_utc(fetched.to_ms)} rows={candles.rows} bad_lines={candles.bad_lines} "
        f"candles={len(candles.bars)} stored={fetched.new_bars} refused={refused} "
        f"finals={finals} revisions={revisions} store={path}\n"
    )
    if candles.first_bad_line is not None:
        sys.stderr.write(f"fxconnector import: first skipped line: {candles.first_bad_line}\n")
    return 0
