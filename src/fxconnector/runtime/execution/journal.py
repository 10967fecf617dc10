"""The execution journal: append-only, durable, one writer, replayed on start.

Layout: `<root>/journal.jsonl` and the writer lock `<root>/.writer.lock` (the store's lock:
`flock`, released by the kernel even under kill -9). A line is one batch: a JSON array of the
records of one decision (canonical encoding), written with one `write` and fsynced before
`append` returns. So a batch is on disk whole or, cut by a crash, as a torn last line, which
`open()` truncates and reports: a torn batch was never acknowledged (its `append` had not
returned, so nothing of it was sent), and dropping it whole keeps every batch atomic. An
unreadable line anywhere else is corruption: StoreCorrupt with the file and line number, never a
silent skip (the core needs every event to rebuild its state).

Crash-only: `open()` is both the start and the recovery; it returns every record in order for the
core's replay.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import msgspec

from fxconnector.core.errors import ContractViolation, StoreCorrupt, StoreError
from fxconnector.core.model.exec_event import ExecEvent
from fxconnector.core.utils import json_codec
from fxconnector.runtime.store.jsonl_files import read_repaired
from fxconnector.runtime.store.lock import WriterLock

T = TypeVar("T")

JOURNAL_NAME: Final = "journal.jsonl"


class Journal(Generic[T]):
    """An append-only journal of batches of `T` (msgspec-decodable) under `root`."""

    __slots__ = ("_decoder", "_fd", "_lock", "path", "root", "torn")

    def __init__(self, root: Path, record_type: Any, *, name: str = JOURNAL_NAME) -> None:
        self.root = root
        self.path = root / name
        self._decoder: msgspec.json.Decoder[list[T]] = msgspec.json.Decoder(list[record_type])
        self._lock = WriterLock(root)
        self._fd: int | None = None
        #: What open() cut from a torn last line ("path: dropped N bytes"), for the log.
        self.torn: list[str] = []

    def open(self) -> list[T]:
        """Take the writer lock (StoreLocked if another process holds it), repair a torn last
        line, and return every record in order."""
        self._lock.acquire()
        try:
            records = self._read()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            _fsync_dir(self.root)
        except OSError as exc:
            self._lock.release()
            raise StoreError(f"cannot open the journal {self.path}: {exc.strerror}") from exc
        except BaseException:
            self._lock.release()
            raise
        self._fd = fd
        return records

    def _read(self) -> list[T]:
        if not self.path.exists():
            return []
        data = read_repaired(self.path, self.torn)
        records: list[T] = []
        for number, line in enumerate(data.split(b"\n")[:-1], start=1):
            try:
                records.extend(self._decoder.decode(line))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise StoreCorrupt(f"{self.path}:{number}: {exc}") from None
        return records

    def append(self, batch: Sequence[T]) -> None:
        """Write `batch` as one line and fsync it; when this returns, the batch survives a crash.
        An empty batch writes nothing. A failure raises StoreError: the caller must stop (the
        line may be half written; the next open() cuts it). A batch that would not decode back is
        refused before anything is written (ContractViolation)."""
        if not batch:
            return
        fd = self._fd
        if fd is None:
            raise StoreError(f"the journal {self.path} is not open for writing")
        line = json_codec.encode(list(batch)) + b"\n"
        try:
            self._decoder.decode(line)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            # Our bug; never write a line that a replay could not read back.
            raise ContractViolation(f"refusing a journal line that does not decode: {exc}") from exc
        try:
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError as exc:
            raise StoreError(f"cannot append to the journal {self.path}: {exc.strerror}") from exc

    def close(self) -> None:
        """Close the file and drop the lock. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._lock.release()

    def __enter__(self) -> Journal[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def exec_journal(root: Path) -> Journal[ExecEvent]:
    """The execution journal of exec_event_v1 events under `root`."""
    return Journal(root, ExecEvent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
