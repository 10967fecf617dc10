"""`fxconnector export`: final bars of one series out of the store as Parquet, CSV or JSON lines.

Rules: the rows are exactly those of `fxconnector bars` (the latest revision of each key with
`from <= open_ms < to`, ascending). Parquet and CSV carry the Arrow layout of
`client.frames.BAR_SCHEMA` (the contract's columns; `open_ms`, `close_ms` and `event_ts` as
UTC timestamps, prices and volume float64); JSON lines are the canonical `ohlcv_event_v1`
events (epoch ms integers), as `fxconnector bars` prints them. A file is written beside its
target and renamed into place at the end: an interrupted export leaves no half file. Work goes
in batches, so memory does not grow with the range. Bad input is one line and exit code 2.
A range with no bars still writes its (empty) file, with a warning on stderr naming the range
asked and the range the store holds for the series (a wrong --from/--to is the usual cause).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from fxconnector.app.bar_writers import FORMATS, write_bars
from fxconnector.app.cli_bars import DEFAULT_STORE, _symbol
from fxconnector.app.progress import ProgressBar
from fxconnector.app.timeparse import parse_time_ms
from fxconnector.core.errors import ConfigError, ContractViolation
from fxconnector.core.time_geom import Timeframe, iso_utc, parse_timeframe
from fxconnector.runtime.store.factory import open_store
from fxconnector.runtime.store.port import FinalStore
from fxconnector.tools.options import existing_store, writer_lock


def add_command(commands: argparse._SubParsersAction[Any]) -> None:
    """Register `export`."""
    export = commands.add_parser(
        "export",
        help="write final bars from the store as Parquet, CSV or JSON lines",
        description="Write the final bars of one series (latest revision of each, by open_ms) "
        "as Parquet or CSV (timestamps as UTC timestamp columns, prices float64) or canonical "
        "JSON lines; the same rows as `fxconnector bars`.",
    )
    export.add_argument("--symbol", required=True)
    export.add_argument("--tf", required=True, help="timeframe")
    export.add_argument(
        "--from", dest="from_", default=None, metavar="TIME", help="first open (ISO or epoch ms)"
    )
    export.add_argument(
        "--to", default=None, metavar="TIME", help="end, exclusive (ISO or epoch ms)"
    )
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument(
        "--out", type=Path, default=None, help="file to write (default: stdout, not a terminal)"
    )
    export.add_argument("--store", type=Path, default=DEFAULT_STORE)
    export.add_argument(
        "--store-kind", default=None, choices=["jsonl", "sqlite"], help="default: the manifest's"
    )
    export.set_defaults(handler=cmd_export)


def _check_out(out: Path | None, fmt: str) -> None:
    if out is None:
        if fmt == "parquet" and sys.stdout.isatty():
            raise ConfigError("--format parquet is binary: give --out FILE or redirect stdout")
        return
    if out.is_dir():
        raise ConfigError(f"--out: {out} is a folder, not a file")
    if not out.parent.is_dir():
        raise ConfigError(f"--out: the folder {out.parent} does not exist")


@contextlib.contextmanager
def _sink(out: Path | None, fmt: str) -> Iterator[IO[bytes]]:
    if out is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    partial = out.with_name(f".{out.name}.partial")
    try:
        with partial.open("wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)


def empty_warning(
    store: FinalStore, symbol: str, tf: Timeframe, from_ms: int | None, to_ms: int | None
) -> str:
    """The warning for an export that found no bars: the range asked and the store's range."""
    asked = (
        f"[{iso_utc(from_ms) if from_ms is not None else 'start'}, "
        f"{iso_utc(to_ms) if to_ms is not None else 'end'})"
    )
    first = next(iter(store.bars(symbol, tf)), None)
    last_open = store.last_open_ms(symbol, tf)
    held = (
        f"the store holds no {symbol} {tf.value} bars"
        if first is None or last_open is None
        else f"the store holds {symbol} {tf.value} bars opening from "
        f"{iso_utc(first.open_ms)} to {iso_utc(last_open)}"
    )
    return f"fxconnector export: warning: no {symbol} {tf.value} bars in {asked}; {held}\n"


def cmd_export(args: argparse.Namespace) -> int:
    symbol = _symbol(args.symbol)
    try:
        tf = parse_timeframe(args.tf)
    except ContractViolation as exc:
        raise ConfigError(f"--tf: {exc}") from None
    from_ms = parse_time_ms(args.from_, flag="--from") if args.from_ else None
    to_ms = parse_time_ms(args.to, flag="--to") if args.to else None
    if from_ms is not None and to_ms is not None and to_ms <= from_ms:
        raise ConfigError("--to must be after --from")
    _check_out(args.out, args.format)
    if not args.store.is_dir():
        raise ConfigError(f"--store: {args.store} is not a store folder")
    found = existing_store(args.store, args.store_kind, None)
    store = open_store(found.kind, args.store)
    with writer_lock(args.store):
        report = store.open()
    for line in report.corrupt_lines:  # exported without them, never silently
        sys.stderr.write(f"fxconnector export: unreadable store line skipped: {line}\n")
    progress = ProgressBar(f"export {symbol} {tf.value}")
    try:
        finals = (stored.event() for stored in store.bars(symbol, tf, from_ms, to_ms))
        with _sink(args.out, args.format) as sink:
            rows = write_bars(args.format, sink, finals, progress.update)
        if rows == 0:
            sys.stderr.write(empty_warning(store, symbol, tf, from_ms, to_ms))
    finally:
        progress.finish()
        store.close()
    where = str(args.out) if args.out is not None else "stdout"
    sys.stderr.write(f"export symbol={symbol} tf={tf.value} rows={rows} out={where}\n")
    return 0
