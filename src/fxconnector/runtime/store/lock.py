"""The writer lock of a store: one writer per store directory, in this process or any other.

Rules:
- The lock is `fcntl.flock(LOCK_EX | LOCK_NB)` on `<root>/.writer.lock`. flock locks belong to
  the open file description, so a second `acquire()` in the same process (a new descriptor)
  fails just like one from another process, and the kernel releases the lock when the holder
  dies, even under `kill -9`: no stale-lock cleanup is ever needed.
- The holder writes its pid into the file so the loser can name it in StoreLocked. The file is
  never deleted: unlinking a lock file while someone waits on it lets two writers in.
- The descriptor is close-on-exec (Python's default), so child programs never inherit the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Final

from fxconnector.core.errors import StoreError, StoreLocked

LOCK_NAME: Final = ".writer.lock"


class WriterLock:
    """The exclusive writer lock of the store rooted at `root`."""

    __slots__ = ("_fd", "path")

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise StoreLocked naming the lock file and the holder's pid."""
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open the writer lock {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StoreLocked(
                f"store is locked by another writer: {self.path} is held by pid {holder}"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {self.path}: {exc}") from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)  # closing the descriptor drops the flock too
            raise StoreError(f"cannot write the holder pid into {self.path}: {exc}") from exc
        self._fd = fd

    def release(self) -> None:
        """Drop the lock. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Clear the pid first so nobody reads a dead holder's pid after we let go.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def _read_holder(fd: int) -> str:
    """The pid the holder wrote, or 'unknown' when it has not written it yet."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
