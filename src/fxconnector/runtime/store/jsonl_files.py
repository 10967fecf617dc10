"""The JSONL store's day files on disk: names, appends with their fsync, reading and checking
lines (see ssot_jsonl.py for the layout and the rules).

Rules: no store state here (the store owns its index and lock); a bad line is reported as
"path:LINE: reason" and skipped, never raised, never silently dropped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import resource
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

import msgspec

from fxconnector.core.model.bar import StoredFinal
from fxconnector.core.time_geom import DAY_MS, Timeframe
from fxconnector.runtime.store import rules

T = TypeVar("T")

FETCHED_NAME: Final = "fetched.jsonl"
#: Open append descriptors kept at once, at most: a live connector writes the 1m file, the coverage
#: file and each derived timeframe's file of every symbol, so with a few hundred symbols a small
#: LRU closes (and first fsyncs, on the appending thread: the event loop) files it reopens a
#: minute later. The cap is a quarter of the process's descriptor limit (open_files_cap).
MAX_OPEN_FILES: Final = 2048
MIN_OPEN_FILES: Final = 64
#: Unreadable lines listed one by one per file; the rest are counted in one entry.
MAX_REPORTED_LINES: Final = 100
EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()
DECODE_ERRORS: Final = (msgspec.ValidationError, msgspec.DecodeError)


class FetchedLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One coverage line: broker 1m history for `[from_ms, to_ms)` was fetched."""

    from_ms: int
    to_ms: int


FINAL_DECODER: Final = msgspec.json.Decoder(StoredFinal)
FETCHED_DECODER: Final = msgspec.json.Decoder(FetchedLine)


class DayFiles:
    """Append descriptors in a bounded LRU, and what must be fsynced at the next sync."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._fds: OrderedDict[Path, int] = OrderedDict()
        self._dirty: set[Path] = set()
        self._dirs: set[Path] = set()  # directories that gained an entry since the last sync

    def append(self, path: Path, data: bytes) -> None:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._open(path)
        else:
            self._fds.move_to_end(path)
        view = memoryview(data)
        while view:  # a regular file takes it all at once; loop for the rare short write
            view = view[os.write(fd, view) :]
        self._dirty.add(path)

    def _open(self, path: Path) -> int:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.update(p.parent for p in missing)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._dirs.add(path.parent)
        self._fds[path] = fd
        while len(self._fds) > self._capacity:
            old_path, old_fd = self._fds.popitem(last=False)
            if old_path in self._dirty:  # sync before closing: a later sync cannot reach it
                os.fsync(old_fd)
                self._dirty.discard(old_path)
            os.close(old_fd)
        return fd

    def takesync(self) -> tuple[list[int], list[Path]]:
        """What the next sync must fsync, handed over: duplicated descriptors of the dirty files
        (valid even if the LRU closes the originals meanwhile) and the directories."""
        fds = [os.dup(self._fds[path]) for path in sorted(self._dirty)]
        dirs = sorted(self._dirs)
        self._dirty.clear()
        self._dirs.clear()
        return fds, dirs

    def close(self) -> None:
        while self._fds:
            _, fd = self._fds.popitem()
            with contextlib.suppress(OSError):
                os.close(fd)
        self._dirty.clear()
        self._dirs.clear()


def open_files_cap() -> int:
    """Append descriptors the store may keep: a quarter of the soft RLIMIT_NOFILE (sockets,
    the HTTP server and SQLite need the rest), within [MIN_OPEN_FILES, MAX_OPEN_FILES]."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_OPEN_FILES
    return max(MIN_OPEN_FILES, min(MAX_OPEN_FILES, soft // 4))


def sync(fds: list[int], dirs: list[Path]) -> None:
    """fsync taken descriptors (closing them) and directories; no store state is touched, so
    this runs outside the store's lock (and off the event loop when the caller wants).

    Many files are fsynced by a few threads at once: the file system commits their journal
    together, where one after another each waits for its own commit (190 day files of a
    month's replay: half the time). Directories follow their files."""
    try:
        if len(fds) < _PARALLEL_FSYNC_MIN:
            for fd in fds:
                os.fsync(fd)
        else:
            list(_fsync_pool().map(os.fsync, fds))
        for directory in dirs:
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        for fd in fds:
            os.close(fd)


#: Fewer files than this are fsynced on the calling thread (a live minute's few files).
_PARALLEL_FSYNC_MIN: Final = 8
_FSYNC_THREADS: Final = 8
_pool: list[ThreadPoolExecutor] = []
_pool_lock = threading.Lock()


def _fsync_pool() -> ThreadPoolExecutor:
    """The process's fsync threads, started on first use (fsync waits; it holds no GIL)."""
    with _pool_lock:
        if not _pool:
            _pool.append(ThreadPoolExecutor(_FSYNC_THREADS, thread_name_prefix="fsync"))
        return _pool[0]


def day_of(path: Path) -> int | None:
    """The UTC day index a day file is named after; None for a foreign name."""
    try:
        day = dt.date.fromisoformat(path.stem)
    except ValueError:
        return None
    if path.name != f"{day.isoformat()}.jsonl":
        return None
    return day.toordinal() - EPOCH_ORDINAL


def without(intervals: list[rules.Interval], start: int, end: int) -> list[rules.Interval]:
    """`intervals` (merged, ascending) minus `[start, end)`."""
    out: list[rules.Interval] = []
    for low, high in intervals:
        if high <= start or low >= end:
            out.append((low, high))
            continue
        if low < start:
            out.append((low, start))
        if high > end:
            out.append((end, high))
    return out


def good_bars(
    path: Path,
    data: bytes,
    symbol: str,
    tf: Timeframe,
    day: int,
    corrupt: list[str],
    unsure_days: set[int],
) -> dict[int, StoredFinal]:
    """The latest readable revision of each key of one day file. A line that breaks the
    contract, its file or the rev sequence is skipped and reported in `corrupt` (its 1m day in
    `unsure_days`); a revision whose predecessor is lost is kept, and the gap reported."""
    before = len(corrupt)
    numbers, values = decode_lines(FINAL_DECODER, path, data, corrupt)
    latest: dict[int, StoredFinal] = {}
    for line_number, bar in zip(numbers, values, strict=True):
        problem = rules.final_problem(bar)
        if problem is None and (bar.symbol != symbol or bar.tf is not tf):
            problem = f"a {bar.symbol} {bar.tf} bar in the {symbol}/{tf} folder"
        if problem is None and bar.open_ms // DAY_MS != day:
            problem = f"open_ms {bar.open_ms} is not on this file's UTC day"
        if problem is None:
            previous = latest.get(bar.open_ms)
            expected = 0 if previous is None else previous.rev + 1
            if bar.rev < expected:
                problem = f"rev {bar.rev} of open_ms {bar.open_ms}, expected {expected}"
            elif bar.rev > expected:  # kept: the newest word on its key
                corrupt.append(
                    f"{path}:{line_number}: rev {bar.rev} of open_ms {bar.open_ms} "
                    f"kept, but rev {expected} before it is missing"
                )
        if problem is not None:
            corrupt.append(f"{path}:{line_number}: {problem}")
            if tf is Timeframe.M1:
                unsure_days.add(bar.open_ms // DAY_MS)
            continue
        latest[bar.open_ms] = bar
    if tf is Timeframe.M1 and len(corrupt) > before:
        unsure_days.add(day)
    return latest


def read_repaired(path: Path, torn: list[str]) -> bytes:
    """The file's bytes after cutting a torn last line (a crash mid-write), which is reported."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return data
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as handle:
        handle.truncate(keep)
        os.fsync(handle.fileno())
    torn.append(f"{path}: dropped {len(data) - keep} bytes")
    return data[:keep]


def decode_lines(
    decoder: msgspec.json.Decoder[T], path: Path, data: bytes, corrupt: list[str]
) -> tuple[Sequence[int], list[T]]:
    """(line numbers, values) of every readable line; each unreadable one is reported in
    `corrupt` as "path:LINE: reason" and skipped."""
    try:
        values = decoder.decode_lines(data)
    except DECODE_ERRORS:
        values = None
    # decode_lines skips blank lines; a count mismatch means one is there, and it is corrupt.
    if values is not None and len(values) == data.count(b"\n"):
        return range(1, len(values) + 1), values
    numbers: list[int] = []
    good: list[T] = []
    bad = 0
    for line_number, line in enumerate(data.split(b"\n")[:-1], start=1):
        problem = "empty line" if not line.strip() else None
        if problem is None:
            try:
                good.append(decoder.decode(line))
            except DECODE_ERRORS as exc:
                problem = str(exc)
            else:
                numbers.append(line_number)
                continue
        bad += 1
        if bad <= MAX_REPORTED_LINES:
            corrupt.append(f"{path}:{line_number}: {problem}")
    if bad > MAX_REPORTED_LINES:
        corrupt.append(f"{path}: {bad - MAX_REPORTED_LINES} more unreadable lines not listed")
    return numbers, good


def rewrite(path: Path, data: bytes) -> None:
    """Replace a file atomically: temp file, fsync, rename, fsync the directory."""
    temp = path.with_name(path.name + ".tmp")
    with temp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
