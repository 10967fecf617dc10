"""`fxconnector migrate`: copy a store into a new one of another kind, and verify the copy; or
give a store written before manifests its manifest (`--write-manifest`).

Rules: the source's settings come from its manifest; the destination gets the same manifest
(its kind aside), so a copy never changes what the bars mean. `--write-manifest` infers the
calendar, timeframes, symbols and volume mode from the bars, verifies every bar against them
(`runtime.store.upgrade`) and writes the manifest in place, or refuses naming why. Both stores
are opened as writers (their locks held for the whole run; the source's
recovery runs as on any writer's start). The destination must be a new or empty store. A
progress bar goes to stderr on a terminal; one `key=value` summary line goes to stdout, and
each verification difference to stderr. Exit code 0 only when the verification passed, 1 when
it did not, 2 on bad usage or when a running connector holds a store.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, cast

import msgspec

from fxconnector.core.errors import ConfigError, ContractViolation
from fxconnector.core.time_geom import Timeframe, parse_timeframe
from fxconnector.runtime.store import manifest
from fxconnector.runtime.store.factory import StoreKind, holds_data, open_store
from fxconnector.runtime.store.migrate import MigrationReport, migrate
from fxconnector.runtime.store.ssot_sqlite import DB_NAME
from fxconnector.runtime.store.upgrade import Settings, UpgradeReport, infer_manifest
from fxconnector.tools.options import (
    STORE_KINDS,
    CliSupport,
    add_store_flags,
    existing_store,
    now_ms,
    require_store,
    store_path,
    writer_lock,
)

EXIT_OK = 0
EXIT_UNVERIFIED = 1


def add_command(commands: argparse._SubParsersAction[Any], support: CliSupport) -> None:
    parser = commands.add_parser(
        "migrate",
        help="copy the store into a new store of another kind, and verify it",
        description="Copy every revision of every bar (reasons kept) and every fetched interval "
        "from the store (--workdir or --store, of --from-kind) into the empty store at --to (of "
        "--to-kind), then verify: latest bars byte-identical per series, revision chains and "
        "fetched intervals equal, and no audit problem the source does not have. Exit 0 only "
        "when the verification passed, 1 when it did not, 2 on bad usage (a non-empty "
        "destination included) or when a running connector holds a store.",
    )
    add_store_flags(parser, kind_flag="--from-kind")
    parser.add_argument("--to", type=Path, metavar="DIR", help="the destination store folder")
    parser.add_argument("--to-kind", choices=STORE_KINDS, help="the destination's store kind")
    parser.add_argument(
        "--calendar",
        default=None,
        metavar="PROFILE",
        help="calendar profile (default: the store's manifest); with --write-manifest, the "
        "calendar to verify when the bars alone cannot tell",
    )
    upgrade = parser.add_argument_group(
        "--write-manifest",
        "Give a store written before manifests its manifest.json, in place: the calendar "
        "(unless --calendar), timeframes, symbols and volume mode are inferred from the bars and "
        "every bar is verified against them; price side and open mode cannot be seen in bars "
        "and default to bid and first_tick.",
    )
    upgrade.add_argument("--write-manifest", action="store_true", help="upgrade in place")
    upgrade.add_argument("--timeframes", default=None, help="comma list (default: the stored)")
    upgrade.add_argument("--price", default=None, choices=["bid", "ask", "mid"])
    upgrade.add_argument("--open-mode", default=None, choices=["first_tick", "previous_close"])
    upgrade.add_argument("--volume", default=None, choices=["ticks", "size"])
    parser.set_defaults(handler=lambda args: cmd_migrate(args, support))


def cmd_migrate(args: argparse.Namespace, support: CliSupport) -> int:
    if args.write_manifest:
        return cmd_write_manifest(args, support)
    upgrade_only = [
        flag
        for flag, value in (
            ("--timeframes", args.timeframes),
            ("--price", args.price),
            ("--open-mode", args.open_mode),
            ("--volume", args.volume),
        )
        if value is not None
    ]
    if upgrade_only:
        raise ConfigError(f"{', '.join(upgrade_only)} go only with --write-manifest")
    if args.to is None or args.to_kind is None:
        raise ConfigError("migrate needs --to DIR and --to-kind (or --write-manifest)")
    source_path, destination_path = store_path(args), Path(args.to)
    if source_path.resolve() == destination_path.resolve():
        raise ConfigError("--to must be another folder than the source store")
    found = existing_store(
        source_path, args.store_kind, args.calendar, kind_flag_name="--from-kind"
    )
    assert found.manifest is not None  # existing_store refuses a legacy store here
    profile = found.profile
    if holds_data(destination_path):
        raise ConfigError(
            f"the destination store {destination_path} is not empty: migrate only into an empty "
            "store (a new folder)"
        )
    want = msgspec.structs.replace(
        found.manifest,
        store_kind=cast(StoreKind, args.to_kind),
        origin="migrate",
        created_by=manifest.CREATED_BY,
    )
    source = open_store(found.kind, source_path)
    destination = open_store(
        cast(StoreKind, args.to_kind),
        destination_path,
        identity=manifest.StoreIdentity(want, profile, asked_by=f"the source {source_path}"),
    )
    with writer_lock(source_path):
        skipped = source.open().corrupt_lines
    for line in skipped:  # not copied: the copy is not the whole source
        sys.stderr.write(f"fxconnector migrate: unreadable source line skipped: {line}\n")
    try:
        with writer_lock(destination_path):
            destination.open()
        bar = support.progress_bar(f"migrate {found.kind} -> {args.to_kind}")
        try:
            report = migrate(source, destination, profile, progress=bar.update)
        finally:
            bar.finish()
            destination.close()
    finally:
        source.close()
    sys.stdout.write(
        summary_line(report, f"{found.kind}:{source_path}", f"{args.to_kind}:{destination_path}")
        + "\n"
    )
    for difference in report.first_differences:
        sys.stderr.write(f"fxconnector migrate: difference: {difference}\n")
    return EXIT_OK if report.verified and not skipped else EXIT_UNVERIFIED


def summary_line(report: MigrationReport, source: str, destination: str) -> str:
    problems = 0 if report.destination_audit is None else report.destination_audit.problems_total
    return (
        f"migrate from={source} to={destination} series={report.series} keys={report.keys} "
        f"records={report.records} revised={report.revised} fetched={report.fetched} "
        f"audit_problems={problems} differences={report.differences} "
        f"verified={'yes' if report.verified else 'no'} wall_s={report.wall_s:.2f}"
    )


def cmd_write_manifest(args: argparse.Namespace, support: CliSupport) -> int:
    """Infer, verify and write the manifest of a store written before manifests."""
    if args.to is not None or args.to_kind is not None:
        raise ConfigError("--write-manifest upgrades the store in place: it takes no --to")
    path = store_path(args)
    found = manifest.read_manifest(path)
    if found is not None:
        raise ConfigError(
            f"store {path} already has its {manifest.MANIFEST_NAME}: {manifest.describe(found)}"
        )
    kind = cast(StoreKind, args.store_kind or ("sqlite" if _has_db(path) else "jsonl"))
    require_store(path, kind)
    settings = Settings(
        calendar=args.calendar,
        timeframes=_timeframes(args.timeframes),
        price=args.price,
        open_mode=args.open_mode,
        volume=args.volume,
    )
    store = open_store(kind, path)
    with writer_lock(path):
        store.open()
    bar = support.progress_bar("verify bars")
    try:
        report = infer_manifest(store, path, kind, settings, now_ms=now_ms(), progress=bar.update)
        manifest.write_manifest(path, report.manifest)
    finally:
        bar.finish()
        store.close()
    sys.stdout.write(upgrade_line(path, report) + "\n")
    return EXIT_OK


def _has_db(path: Path) -> bool:
    return (path / DB_NAME).is_file()


def _timeframes(text: str | None) -> tuple[Timeframe, ...] | None:
    if text is None:
        return None
    try:
        return tuple(parse_timeframe(part.strip()) for part in text.split(",") if part.strip())
    except ContractViolation as exc:
        raise ConfigError(f"--timeframes: {exc}") from None


def upgrade_line(path: Path, report: UpgradeReport) -> str:
    made = report.manifest
    groups: dict[str, list[str]] = {}
    for key, value in report.how.items():
        groups.setdefault(value, []).append(key)
    how = " ".join(f"{value}={','.join(keys)}" for value, keys in sorted(groups.items()))
    return (
        f"manifest written store={path} {manifest.describe(made)} "
        f"bars_checked={report.bars_checked} {how}"
    )
