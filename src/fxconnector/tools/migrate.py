"""`fxconnector migrate`: copy a store into a new one of another kind, and verify the copy.

Rules: both stores are opened as writers (their locks held for the whole run; the source's
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

from fxconnector.core.errors import ConfigError
from fxconnector.runtime.store.factory import StoreKind, open_store
from fxconnector.runtime.store.migrate import MigrationReport, migrate
from fxconnector.tools.options import (
    STORE_KINDS,
    CliSupport,
    add_store_flags,
    calendar,
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
    parser.add_argument(
        "--to", type=Path, required=True, metavar="DIR", help="the destination store folder"
    )
    parser.add_argument("--to-kind", required=True, choices=STORE_KINDS)
    parser.add_argument(
        "--calendar",
        default="fx_ny",
        metavar="PROFILE",
        help="calendar profile for the audits (default fx_ny)",
    )
    parser.set_defaults(handler=lambda args: cmd_migrate(args, support))


def cmd_migrate(args: argparse.Namespace, support: CliSupport) -> int:
    source_path, destination_path = store_path(args), Path(args.to)
    if source_path.resolve() == destination_path.resolve():
        raise ConfigError("--to must be another folder than the source store")
    require_store(source_path, args.store_kind)
    profile = calendar(args.calendar)
    source = open_store(cast(StoreKind, args.store_kind), source_path)
    destination = open_store(cast(StoreKind, args.to_kind), destination_path)
    with writer_lock(source_path):
        skipped = source.open().corrupt_lines
    for line in skipped:  # not copied: the copy is not the whole source
        sys.stderr.write(f"fxconnector migrate: unreadable source line skipped: {line}\n")
    try:
        with writer_lock(destination_path):
            destination.open()
        bar = support.progress_bar(f"migrate {args.store_kind} -> {args.to_kind}")
        try:
            report = migrate(source, destination, profile, progress=bar.update)
        finally:
            bar.finish()
            destination.close()
    finally:
        source.close()
    sys.stdout.write(
        summary_line(
            report, f"{args.store_kind}:{source_path}", f"{args.to_kind}:{destination_path}"
        )
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
