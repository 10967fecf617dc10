"""`fxconnector replay` and `fxconnector bars`: recorded ticks into the SSOT, and bars out of it.

Rules: bad input (path, format, symbol, time, timeframe) is a ConfigError, which `main` turns
into one line on stderr and exit code 2. The replay prints a progress bar on a terminal and one
`key=value` summary line on stdout, which names the store it wrote; `bars` prints canonical
`ohlcv_event_v1` JSON lines (or CSV) ordered by open_ms.
A replay writes into its own store: by default `var/replay/<SYMBOL>-<calendar>`; a `--store`
holding a store another command created (a connector's, a migration's) is refused unless
`--append` says so, and a store whose manifest differs from the replay's settings is always
refused. Flags left out take the existing store's settings from its manifest.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any, Literal, cast

import msgspec

from fxconnector.app import logs
from fxconnector.app.bar_writers import write_bars
from fxconnector.app.progress import ProgressBar
from fxconnector.app.timeparse import parse_time_ms
from fxconnector.config.calendars import load_calendar, profile_names
from fxconnector.config.schema import BarsConfig, Config, StoreConfig
from fxconnector.core.builders.spec import BarSpec, OpenMode, PriceSide, VolumeMode
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.errors import ConfigError, ContractViolation
from fxconnector.core.model.bar import SYMBOL_PATTERN
from fxconnector.core.time_geom import Timeframe, iso_utc, parse_timeframe
from fxconnector.runtime.ingest.broker.replay.readers import Format, read_ticks
from fxconnector.runtime.ingest.replay import ReplaySummary, run_replay
from fxconnector.runtime.store import manifest
from fxconnector.runtime.store.factory import holds_data, open_store, preflight
from fxconnector.runtime.store.lock import LOCK_NAME
from fxconnector.tools.options import existing_store, writer_lock

log = logging.getLogger("fxconnector.replay")
FORMATS = ("auto", "dukascopy", "csv", "truefx", "histdata")
DEFAULT_STORE = Path(Config().workdir) / StoreConfig().path
#: Where a replay writes when no --store is given: its own store per symbol and calendar.
REPLAY_ROOT = Path(Config().workdir) / "replay"
#: Where an import writes when no --store is given.
IMPORT_ROOT = Path(Config().workdir) / "import"
DEFAULT_CALENDAR = "fx_ny"


def add_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Register `replay` and `bars`."""
    replay = commands.add_parser(
        "replay",
        help="run the whole pipeline over recorded ticks into the store",
        description="Replay recorded ticks (Dukascopy .bi5 tree, CSV, TrueFX, HistData) through "
        "validation, previews, close detection, the SSOT and derived timeframes.",
    )
    replay.add_argument("path", type=Path, help="a tick file or a Dukascopy folder")
    replay.add_argument("--symbol", required=True, help="symbol, e.g. EURUSD")
    replay.add_argument("--format", default="auto", choices=FORMATS)
    replay.add_argument(
        "--from", dest="from_", default=None, metavar="TIME", help="start (ISO-8601 or epoch ms)"
    )
    replay.add_argument(
        "--to", default=None, metavar="TIME", help="end, exclusive (ISO-8601 or epoch ms)"
    )
    replay.add_argument("--speed", default="max", help="max, or a factor of recorded time")
    replay.add_argument(
        "--price", default=None, choices=[p.value for p in PriceSide], help="default bid"
    )
    replay.add_argument(
        "--open-mode",
        default=None,
        choices=[m.value for m in OpenMode],
        help="default first_tick",
    )
    replay.add_argument(
        "--volume", default=None, choices=[v.value for v in VolumeMode], help="default ticks"
    )
    replay.add_argument("--timeframes", default=None, help="comma list (default: all configured)")
    replay.add_argument(
        "--calendar",
        default=None,
        help=f"calendar profile (default {DEFAULT_CALENDAR}, or the --store's manifest)",
    )
    replay.add_argument(
        "--store",
        type=Path,
        default=None,
        help=f"the store to write (default {REPLAY_ROOT}/SYMBOL-CALENDAR, the replay's own)",
    )
    replay.add_argument(
        "--store-kind", default=None, choices=["jsonl", "sqlite"], help="default jsonl"
    )
    replay.add_argument(
        "--append",
        action="store_true",
        help="write into a store that another command created (its manifest must match)",
    )
    replay.add_argument(
        "--ack-interval",
        type=float,
        default=1.0,
        help="seconds of wall time between durable flushes (each logged as ssot.durable)",
    )
    replay.add_argument("--log-level", default="warning", choices=["debug", "info", "warning"])
    replay.set_defaults(handler=cmd_replay)

    bars = commands.add_parser(
        "bars",
        help="print final bars from the store",
        description="Print final bars (latest revision of each) ordered by open_ms: canonical "
        "ohlcv_event_v1 JSON lines, or the CSV `fxconnector export --format csv` writes.",
    )
    bars.add_argument("--symbol", required=True)
    bars.add_argument("--tf", required=True, help="timeframe")
    bars.add_argument(
        "--from", dest="from_", default=None, metavar="TIME", help="first open (ISO or epoch ms)"
    )
    bars.add_argument("--to", default=None, metavar="TIME", help="end, exclusive (ISO or epoch ms)")
    bars.add_argument("--format", default="jsonl", choices=["jsonl", "csv"])
    bars.add_argument("--store", type=Path, default=DEFAULT_STORE)
    bars.add_argument(
        "--store-kind", default=None, choices=["jsonl", "sqlite"], help="default: the manifest's"
    )
    bars.set_defaults(handler=cmd_bars)


def _symbol(text: str) -> str:
    if not re.fullmatch(SYMBOL_PATTERN, text):
        raise ConfigError(f"--symbol: {text!r} is not a symbol like EURUSD")
    return text


def _timeframes(text: str | None) -> tuple[Timeframe, ...] | None:
    if text is None:
        return None
    try:
        found = tuple(parse_timeframe(part.strip()) for part in text.split(",") if part.strip())
    except ContractViolation as exc:
        raise ConfigError(f"--timeframes: {exc}") from None
    if Timeframe.M1 not in found:
        raise ConfigError("--timeframes must include 1m (every final derives from it)")
    return tuple(sorted(set(found), key=lambda tf: tf.ms))


def _speed(text: str) -> float:
    if text == "max":
        return 0.0
    try:
        speed = float(text)
    except ValueError:
        raise ConfigError(f"--speed: {text!r} is neither max nor a number") from None
    if not speed > 0:
        raise ConfigError("--speed must be greater than 0")
    return speed


def _calendar(name: str) -> CalendarProfile:
    if name not in profile_names():
        known = ", ".join(profile_names())
        raise ConfigError(f"--calendar: unknown profile {name!r} (known: {known})")
    return load_calendar(name, now_ms=time.time_ns() // 1_000_000)


def _holds_other_files(path: Path) -> bool:
    """True when a folder holds more than an interrupted store creation leaves (its lock)."""
    return path.is_dir() and any(entry.name != LOCK_NAME for entry in path.iterdir())


def replay_identity(
    args: argparse.Namespace, symbol: str, origin: Literal["replay", "import"] = "replay"
) -> tuple[manifest.StoreIdentity, Path]:
    """The store a replay (or an import) writes and what it must be; ConfigError when it may
    not write it. Each writes only into stores it created unless `--append` says so."""
    timeframes = _timeframes(args.timeframes)
    root = REPLAY_ROOT if origin == "replay" else IMPORT_ROOT
    path: Path = args.store or root / f"{symbol}-{args.calendar or DEFAULT_CALENDAR}"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--store: {path} is a file, not a store folder")
    found = manifest.read_manifest(path)
    if found is None and holds_data(path):
        raise manifest.legacy_error(path)
    if found is None and _holds_other_files(path):
        # A typo (`--store .`, `--store ~`) must not turn a folder of other files into a store.
        raise ConfigError(
            f"--store: {path} holds other files and is not a store (no {manifest.MANIFEST_NAME}); "
            f"give a new or empty folder, e.g. {root}/{symbol}-{args.calendar or DEFAULT_CALENDAR}"
        )
    if found is not None:
        if found.origin != origin and not args.append:
            raise ConfigError(
                f"store {path} was created by `fxconnector {found.origin}`, not by "
                f"{'a replay' if origin == 'replay' else 'an import'}: "
                f"{origin} writes only into its own stores (leave out --store: the default is "
                f"{root}/SYMBOL-CALENDAR); pass --append to add the {origin}'s bars to it "
                "for good (the store is append-only)"
            )
        for flag, given, recorded in (
            ("--calendar", args.calendar, found.calendar),
            ("--store-kind", args.store_kind, found.store_kind),
            ("--price", args.price, found.price),
            ("--open-mode", args.open_mode, found.open_mode),
            ("--volume", args.volume, found.volume),
            ("--timeframes", timeframes, found.timeframes),
        ):
            manifest.check_flag(path, flag, given, recorded)
        profile = manifest.load_profile(found, path, now_ms=time.time_ns() // 1_000_000)
        want = msgspec.structs.replace(
            found, symbols=tuple(sorted({*found.symbols, symbol})), origin=origin
        )
    else:
        name = args.calendar or DEFAULT_CALENDAR
        profile = _calendar(name)
        want = manifest.wanted(
            store_kind=args.store_kind or "jsonl",
            calendar=name,
            profile=profile,
            timeframes=timeframes or BarsConfig().timeframes,
            price=args.price or PriceSide.BID.value,
            open_mode=args.open_mode or OpenMode.FIRST_TICK.value,
            volume=args.volume or VolumeMode.TICKS.value,
            symbols=(symbol,),
            origin=origin,
        )
    preflight(path, want, asked_by=f"the {origin}'s flags")
    return manifest.StoreIdentity(want, profile, asked_by=f"the {origin}'s flags"), path


def cmd_replay(args: argparse.Namespace) -> int:
    logs.configure(args.log_level)
    symbol = _symbol(args.symbol)
    from_ms = parse_time_ms(args.from_, flag="--from") if args.from_ else None
    to_ms = parse_time_ms(args.to, flag="--to") if args.to else None
    if from_ms is not None and to_ms is not None and to_ms <= from_ms:
        raise ConfigError("--to must be after --from")
    speed = _speed(args.speed)
    if not 0 < args.ack_interval <= 3600:
        raise ConfigError("--ack-interval must be between 0 and 3600 seconds")
    identity, path = replay_identity(args, symbol)
    settings = identity.manifest
    calendar = identity.calendar.for_symbol(symbol)
    spec = BarSpec(
        PriceSide(settings.price), OpenMode(settings.open_mode), VolumeMode(settings.volume)
    )
    started = time.monotonic()
    batch = read_ticks(args.path, symbol, cast(Format, args.format), from_ms, to_ms)
    read_s = time.monotonic() - started
    # The replay acknowledges (flushes) every --ack-interval itself: the store's own interval
    # flush, meant for a live writer, would only add fsyncs between those.
    store = open_store(
        settings.store_kind, path, round(args.ack_interval * 1000), identity=identity
    )
    with writer_lock(path):
        report = store.open()
    for torn in report.torn_tails:
        logs.emit(log, logging.WARNING, "ssot.torn_tail_truncated", detail=torn)
    for line in report.corrupt_lines:
        logs.emit(log, logging.ERROR, "ssot.corrupt_line_skipped", detail=line)
    bar = ProgressBar(f"replay {symbol}")
    try:
        summary = asyncio.run(
            run_replay(
                batch,
                calendar=calendar,
                timeframes=settings.timeframes,
                spec=spec,
                store=store,
                from_ms=from_ms,
                to_ms=to_ms,
                speed=speed,
                now_ms=time.time_ns() // 1_000_000,
                ack_interval_s=args.ack_interval,
                progress=bar.update,
                ack=lambda through: logs.emit(
                    log, logging.INFO, "ssot.durable", symbol=symbol, through_ms=through
                ),
            )
        )
    finally:
        bar.finish()
        store.close()
    # The whole command's time, reading and decoding the ticks included (what the user waits).
    summary.wall_s = time.monotonic() - started
    sys.stdout.write(_summary_line(symbol, summary, read_s) + f" store={path}\n")
    return 0


def _summary_line(symbol: str, summary: ReplaySummary, read_s: float) -> str:
    def pairs(counts: dict[str, int], order: list[str] | None = None) -> str:
        keys = order or sorted(counts)
        return ",".join(f"{k}:{counts[k]}" for k in keys if k in counts) or "none"

    tf_order = [tf.value for tf in Timeframe]
    return (
        f"replay symbol={symbol} from={iso_utc(summary.from_ms)} to={iso_utc(summary.to_ms)} "
        f"ticks={summary.ticks_total} applied={summary.ticks_applied} "
        f"rejected={pairs(summary.rejected)} late={summary.late_ticks} "
        f"finals={pairs(summary.finals, tf_order)} revisions={pairs(summary.revisions, tf_order)} "
        f"errors={len(summary.errors)} read_s={read_s:.2f} wall_s={summary.wall_s:.2f}"
    )


def cmd_bars(args: argparse.Namespace) -> int:
    symbol = _symbol(args.symbol)
    try:
        tf = parse_timeframe(args.tf)
    except ContractViolation as exc:
        raise ConfigError(f"--tf: {exc}") from None
    from_ms = parse_time_ms(args.from_, flag="--from") if args.from_ else None
    to_ms = parse_time_ms(args.to, flag="--to") if args.to else None
    if not args.store.is_dir():
        raise ConfigError(f"--store: {args.store} is not a store folder")
    found = existing_store(args.store, args.store_kind, None)
    store = open_store(found.kind, args.store)
    with writer_lock(args.store):
        report = store.open()
    for line in report.corrupt_lines:  # served without them, never silently
        sys.stderr.write(f"fxconnector bars: unreadable store line skipped: {line}\n")
    held = sorted({held for held, _ in store.series()})
    if symbol not in held:
        store.close()
        raise ConfigError(
            f"--symbol: store {args.store} holds no {symbol} bars "
            f"(it holds: {', '.join(held) or 'nothing yet'})"
        )
    sys.stdout.flush()
    try:
        write_bars(
            args.format,
            sys.stdout.buffer,
            (b.event() for b in store.bars(symbol, tf, from_ms, to_ms)),
        )
        sys.stdout.buffer.flush()
    finally:
        store.close()
    return 0
