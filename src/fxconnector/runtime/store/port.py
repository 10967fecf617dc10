"""The store port: what every SSOT implementation (JSONL, SQLite) offers, and nothing more.

Rules (DESIGN §6):
- Only final bars are stored (`complete=true`, source history or derived); anything else is a
  ContractViolation.
- Appends are idempotent per key `(symbol, tf, open_ms)`: the same bar again (same OHLCV, tick
  count and source) is a no-op; a different bar for a stored key is stored as revision `rev + 1`
  with its reason. The caller's `rev` is ignored: the store assigns it.
- `flush()` makes every append before it durable (fsync); an append is *acknowledged* once a
  flush that follows it has returned. Stores also flush on their own within
  `fsync_interval_ms`. A crash loses nothing acknowledged.
- Coverage: `mark_fetched` records that the broker's 1m history for `[from_ms, to_ms)` was
  fetched, so open minutes inside it with no final bar are `quiet`, not `missing`.
- One writer per store: `open()` takes an exclusive lock or raises StoreLocked naming the holder.
- `open()` is the crash recovery path too: a torn last line is truncated and reported; a corrupt
  line anywhere else is skipped and reported (`corrupt_lines`, naming the file and line), and
  every other line is served. A store that cannot be read at all raises StoreCorrupt.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from fxconnector.core.builders.vector import BarColumns
from fxconnector.core.model.bar import OhlcvEvent, Source, StoredFinal
from fxconnector.core.time_geom import Timeframe


class AppendOutcome(StrEnum):
    NEW = "new"  # first final of its key (rev 0)
    DUPLICATE = "duplicate"  # identical to the stored latest revision: nothing written
    REVISION = "revision"  # differs from the stored latest: written as rev + 1


@dataclass(frozen=True, slots=True)
class AppendResult:
    outcome: AppendOutcome
    stored: StoredFinal  # the latest revision of the key after this append


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What `open()` found and fixed."""

    files_checked: int = 0
    bars_loaded: int = 0
    torn_tails: list[str] = field(default_factory=list)  # "path: dropped N bytes"
    corrupt_lines: list[str] = field(default_factory=list)  # "path:LINE: reason", skipped


class FinalStore(Protocol):
    """An append-only store of final bars with revisions and coverage."""

    def open(self) -> RecoveryReport:
        """Take the writer lock, recover, and load the index. Raises StoreLocked/StoreCorrupt."""
        ...

    def close(self) -> None:
        """Flush, fsync and release the lock. Idempotent."""
        ...

    def append(self, bars: Sequence[OhlcvEvent], reason: str = "") -> list[AppendResult]:
        """Append final bars (any symbols/tfs, any order); one result per input bar."""
        ...

    def append_columns(
        self, symbol: str, tf: Timeframe, columns: BarColumns, source: Source
    ) -> list[StoredFinal]:
        """Append one series' bars (ascending open_ms) as first finals (rev 0) of UTC days the
        series holds nothing on: a bulk load (a replay into a new series), checked as `append`
        checks, a column at a time. A day the series already holds a bar on is refused with
        ContractViolation, and nothing is written. The stored bars are returned."""
        ...

    def flush(self) -> None:
        """Make every append so far durable."""
        ...

    def mark_fetched(self, symbol: str, from_ms: int, to_ms: int) -> None:
        """Record that 1m history for `[from_ms, to_ms)` was fetched (minute-aligned)."""
        ...

    def fetched_intervals(self, symbol: str, from_ms: int, to_ms: int) -> list[tuple[int, int]]:
        """Merged fetched intervals overlapping `[from_ms, to_ms)`, clipped, ascending."""
        ...

    def bars(
        self, symbol: str, tf: Timeframe, from_ms: int | None = None, to_ms: int | None = None
    ) -> Iterator[StoredFinal]:
        """Latest revision of each key with `from_ms <= open_ms < to_ms`, by open_ms."""
        ...

    def revisions(self, symbol: str, tf: Timeframe, open_ms: int) -> list[StoredFinal]:
        """Every stored revision of one key, rev ascending."""
        ...

    def latest(self, symbol: str, tf: Timeframe, open_ms: int) -> StoredFinal | None:
        """The latest revision of one key, or None."""
        ...

    def last_open_ms(self, symbol: str, tf: Timeframe) -> int | None:
        """open_ms of the newest stored bar of symbol/tf, or None."""
        ...

    def series(self) -> list[tuple[str, Timeframe]]:
        """Every (symbol, tf) with at least one stored bar, sorted."""
        ...
