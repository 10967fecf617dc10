"""Copying a store into another (JSONL -> SQLite and back), then proving the copy is faithful.

Rules (DESIGN §6):
- Both stores are opened by the caller, who holds both writer locks. The destination must be
  empty (no bar, no fetched interval): a non-empty one is refused before anything is written.
- Every revision of every key is copied in rev order with its reason, through the port's
  `append` (so the destination assigns the same revs by its own rules), and every fetched
  interval through `mark_fetched`. The destination is flushed (durable) before verification.
- Verification: per series, the canonical encoding of the latest revisions is byte-identical in
  both stores; every revised key has the same chain (same bytes, reasons included); the fetched
  intervals are equal; and an audit of the destination finds exactly the problems an audit of
  the source finds (a copy may carry a source's flaws, never add one). `verified` says all held.
- Progress goes to a callback as (done, total) over copy and verification steps.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.errors import ConfigError
from fxconnector.core.model.bar import StoredFinal
from fxconnector.core.time_geom import RANGE_END_MS, RANGE_START_MS, Timeframe
from fxconnector.core.utils import json_codec
from fxconnector.runtime.store.audit import AuditReport, audit
from fxconnector.runtime.store.audit_sources import StoreSource, stored_symbols
from fxconnector.runtime.store.port import AppendOutcome, FinalStore

Progress = Callable[[int, int], None]  # (steps done, steps total)

#: Bars per append call: large enough for the stores' bulk paths, small enough for memory.
CHUNK: Final = 20_000
#: Differences kept in a report (all are counted).
MAX_DIFFERENCES: Final = 20


class DestinationNotEmpty(ConfigError):
    """The destination store already holds bars or coverage."""


@dataclass(slots=True)
class MigrationReport:
    series: int = 0
    keys: int = 0  # distinct (symbol, tf, open_ms)
    records: int = 0  # revisions written, rev 0 included
    revised: int = 0  # keys with rev > 0
    fetched: int = 0  # merged fetched intervals copied
    differences: int = 0  # verification failures found
    first_differences: list[str] = field(default_factory=list)
    source_audit: AuditReport | None = None
    destination_audit: AuditReport | None = None
    wall_s: float = 0.0

    def differ(self, text: str) -> None:
        self.differences += 1
        if len(self.first_differences) < MAX_DIFFERENCES:
            self.first_differences.append(text)

    @property
    def verified(self) -> bool:
        """The copy is faithful: identical bars, chains and coverage, no new audit problem."""
        return self.differences == 0


def migrate(
    source: FinalStore,
    destination: FinalStore,
    profile: CalendarProfile,
    *,
    progress: Progress | None = None,
) -> MigrationReport:
    """Copy `source` into the empty `destination` (both open) and verify the copy."""
    started = time.monotonic()
    held = destination.series()
    symbols = stored_symbols(destination)
    if held or symbols:
        raise DestinationNotEmpty(
            f"the destination store is not empty ({len(held)} series, symbols "
            f"{', '.join(symbols[:5])}{' ...' if len(symbols) > 5 else ''}): "
            "migrate only into an empty store (a new folder)"
        )
    report = MigrationReport()
    series = source.series()
    sizes = {key: sum(1 for _ in source.bars(*key)) for key in series}
    total = 2 * sum(sizes.values()) + 2  # copy + verify each key, + coverage and the audits
    done = 0

    def step(amount: int) -> None:
        nonlocal done
        done += amount
        if progress is not None:
            progress(done, total)

    for symbol, tf in series:
        _copy_series(source, destination, symbol, tf, report)
        step(sizes[(symbol, tf)])
    for symbol in stored_symbols(source):
        for start, end in source.fetched_intervals(symbol, RANGE_START_MS, RANGE_END_MS):
            destination.mark_fetched(symbol, start, end)
            report.fetched += 1
    destination.flush()
    step(1)
    report.series = len(series)
    for symbol, tf in sorted(set(series) | set(destination.series())):
        _verify_series(source, destination, symbol, tf, report)
        step(sizes.get((symbol, tf), 0))
    for symbol in sorted(set(stored_symbols(source)) | set(stored_symbols(destination))):
        mine = source.fetched_intervals(symbol, RANGE_START_MS, RANGE_END_MS)
        theirs = destination.fetched_intervals(symbol, RANGE_START_MS, RANGE_END_MS)
        if mine != theirs:
            report.differ(
                f"{symbol} fetched intervals: {len(mine)} in source, {len(theirs)} copied"
            )
    report.source_audit = audit(StoreSource(source), profile)
    report.destination_audit = audit(StoreSource(destination), profile)
    if report.source_audit.problem_counts != report.destination_audit.problem_counts:
        report.differ(
            f"audit problems differ: source {report.source_audit.problem_counts}, "
            f"destination {report.destination_audit.problem_counts}"
        )
    step(1)
    report.wall_s = time.monotonic() - started
    return report


def _copy_series(
    source: FinalStore, destination: FinalStore, symbol: str, tf: Timeframe, report: MigrationReport
) -> None:
    """rev 0 of every key first, then rev 1 of the revised keys (by reason), rev 2, ..."""
    latest = list(source.bars(symbol, tf))
    report.keys += len(latest)
    levels: list[list[StoredFinal]] = [[bar for bar in latest if bar.rev == 0]]
    for bar in latest:
        if bar.rev == 0:
            continue
        report.revised += 1
        for revision in source.revisions(symbol, tf, bar.open_ms):
            while len(levels) <= revision.rev:
                levels.append([])
            levels[revision.rev].append(revision)
    levels[0].sort(key=lambda bar: bar.open_ms)
    for rev, bars in enumerate(levels):
        by_reason: dict[str, list[StoredFinal]] = {}
        for bar in bars:
            by_reason.setdefault(bar.reason, []).append(bar)
        for reason, group in by_reason.items():
            for start in range(0, len(group), CHUNK):
                chunk = group[start : start + CHUNK]
                results = destination.append(chunk, reason)
                report.records += len(chunk)
                wanted = AppendOutcome.NEW if rev == 0 else AppendOutcome.REVISION
                for bar, result in zip(chunk, results, strict=True):
                    if result.outcome is not wanted or result.stored.rev != rev:
                        report.differ(
                            f"{symbol} {tf} {bar.open_ms} rev {rev}: the destination stored "
                            f"it as {result.outcome} rev {result.stored.rev}"
                        )


def _verify_series(
    source: FinalStore, destination: FinalStore, symbol: str, tf: Timeframe, report: MigrationReport
) -> None:
    """Latest revisions byte-identical (one digest each side), then every revised chain."""
    mine = list(source.bars(symbol, tf))
    theirs = list(destination.bars(symbol, tf))
    if _digest(mine) != _digest(theirs):
        report.differ(
            f"{symbol} {tf}: latest revisions differ ({len(mine)} bars in source, "
            f"{len(theirs)} in destination)"
        )
    revised = sorted({bar.open_ms for bar in (*mine, *theirs) if bar.rev > 0})
    for open_ms in revised:
        chain = json_codec.encode_lines(source.revisions(symbol, tf, open_ms))
        copied = json_codec.encode_lines(destination.revisions(symbol, tf, open_ms))
        if chain != copied:
            report.differ(f"{symbol} {tf} {open_ms}: revision chains differ")


def _digest(bars: list[StoredFinal]) -> str:
    digest = hashlib.sha256()
    for bar in bars:
        digest.update(json_codec.encode(bar))
        digest.update(b"\n")
    return digest.hexdigest()
