"""Process checks the app tests share, read from /proc (Linux)."""

from __future__ import annotations

import contextlib
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; False once it exited (a zombie included: only its parent's wait
    is missing) or is gone. Reading /proc/PID/stat of a process being reaped can fail with
    ENOENT or ESRCH (ProcessLookupError): both mean it is gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def child_pids(pid: int) -> set[int]:
    """The pids of `pid`'s children, across all its threads."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that ended
            found |= {int(child) for child in (task / "children").read_text().split()}
    return found
