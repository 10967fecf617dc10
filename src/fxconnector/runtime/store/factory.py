"""Pick the SSOT implementation the config names (`[store] kind`, DESIGN §13).

Rules: construct only; the caller opens the store (taking the writer lock) and closes it, so
the composition root decides when recovery runs. Nothing else chooses a store kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fxconnector.core.errors import ConfigError
from fxconnector.runtime.store.port import FinalStore
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from fxconnector.runtime.store.ssot_sqlite import SqliteStore

StoreKind = Literal["jsonl", "sqlite"]


def open_store(kind: StoreKind, path: Path, fsync_interval_ms: int = 50) -> FinalStore:
    """A new, unopened store of `kind` rooted at the directory `path`."""
    if kind == "jsonl":
        return JsonlStore(path, fsync_interval_ms)
    if kind == "sqlite":
        return SqliteStore(path, fsync_interval_ms)
    raise ConfigError(f"unknown store kind {kind!r} (known: jsonl, sqlite)")
