"""Pick the SSOT implementation the config names (`[store] kind`, DESIGN §13).

Rules: construct only; the caller opens the store (taking the writer lock) and closes it, so
the composition root decides when recovery runs. Nothing else chooses a store kind. A store
built with an identity settles its manifest on `open()`; `preflight` runs the same refusals
earlier, without the lock and without writing, so a mismatch stops a command before it starts
anything.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fxconnector.core.errors import ConfigError, StoreError
from fxconnector.runtime.store import manifest, rules
from fxconnector.runtime.store.manifest import StoreIdentity, StoreKind, StoreManifest
from fxconnector.runtime.store.port import FinalStore
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from fxconnector.runtime.store.ssot_sqlite import DB_NAME, SqliteStore

__all__ = ["StoreKind", "holds_data", "open_store", "preflight"]


def open_store(
    kind: StoreKind,
    path: Path,
    fsync_interval_ms: int = 50,
    *,
    identity: StoreIdentity | None = None,
) -> FinalStore:
    """A new, unopened store of `kind` rooted at the directory `path`."""
    if kind == "jsonl":
        return JsonlStore(path, fsync_interval_ms, identity=identity)
    if kind == "sqlite":
        return SqliteStore(path, fsync_interval_ms, identity=identity)
    raise ConfigError(f"unknown store kind {kind!r} (known: jsonl, sqlite)")


def holds_data(path: Path) -> bool:
    """True when the folder holds bars or coverage of either store kind (read-only look)."""
    db_path = path / DB_NAME
    if db_path.is_file():
        try:
            db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
            try:
                return any(
                    db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None  # noqa: S608 - literal names
                    for table in ("finals", "fetched")
                )
            finally:
                db.close()
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return False
            raise StoreError(f"cannot read {db_path}: {exc}") from exc
    if not path.is_dir():
        return False
    return any(
        child.is_dir()
        and rules.valid_symbol(child.name)
        and (any(child.glob("*.jsonl")) or any(child.glob("*/*.jsonl")))
        for child in path.iterdir()
    )


def preflight(path: Path, want: StoreManifest, asked_by: str = "the config") -> None:
    """The refusals `open()` would raise (legacy store, settings that differ), before opening."""
    found = manifest.read_manifest(path)
    if found is None:
        if holds_data(path):
            raise manifest.legacy_error(path)
        return
    error = manifest.mismatch_error(path, found, want, asked_by)
    if error is not None:
        raise error
