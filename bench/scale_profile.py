"""Where a running connector spends its CPU: `py-spy record` for a while, summarised.

py-spy (`pip install py-spy`; not a dependency) samples the process from outside, so the
connector runs unchanged. The raw (collapsed) stacks are summed per area of our source tree:
the share of samples whose stack passes through each fxconnector package (inclusive), and the
functions where the samples land (self), so the bottlenecks are named by module.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")
_PUBLISH_FLUSH = "RedisSurface._flush (fxconnector/runtime/publish/redis_surface.py"
_PIPELINE_WORK = ("_send_packed_command", "execute_pipeline", "pack_command", "read_response")


def publishing(stack: str) -> bool:
    """True for a stack publishing to Redis: in the surface's flush, or redis-py pipeline work
    of a task of its own (not the status writes)."""
    if _PUBLISH_FLUSH in stack:
        return True
    if "write_status" in stack:
        return False
    return "(redis/" in stack and any(work in stack for work in _PIPELINE_WORK)


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def area(path: str) -> str:
    """`runtime/ingest/broker/sim` for fxconnector/runtime/ingest/broker/sim/broker.py; the
    top-level package (or stdlib module) otherwise. py-spy names files relative to sys.path."""
    if path.startswith("fxconnector/") or "/fxconnector/" in path:
        return str(Path(path.split("fxconnector/", 1)[1]).parent).replace(".", "fxconnector")
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    return path.lstrip("/").split("/", 1)[0].removesuffix(".py")


def summarise(raw: str, top: int = 12) -> dict[str, Any]:
    """Inclusive shares per area and self shares per function of collapsed stacks, over the
    busy samples (the event loop's select is idle time, counted apart)."""
    total = idle = publish = 0
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_FRAME.match(frame) for frame in stack.split(";")]
        last = frames[-1] if frames else None
        if last and last["func"].endswith("select") and area(last["file"]) == "selectors":
            idle += count  # the event loop waiting: not CPU
            continue
        total += count
        publish += count if publishing(stack) else 0
        areas = {area(m["file"]) for m in frames if m}
        for name in areas:
            inclusive[name] += count
        if last:
            leaf[f"{last['func']} ({area(last['file'])})"] += count
    if not total:
        return {"samples": 0, "summary": "py-spy: no samples"}
    shares = {name: round(100 * n / total, 1) for name, n in inclusive.most_common(top)}
    selfs = {name: round(100 * n / total, 1) for name, n in leaf.most_common(top)}
    lines = [
        f"py-spy: {total} busy samples ({idle} more idle in select, left out); "
        "% of busy samples whose stack passes through:"
    ]
    lines += [f"  {pct:5.1f}  {name}" for name, pct in shares.items()]
    lines.append("  where they land (self %):")
    lines += [f"  {pct:5.1f}  {name}" for name, pct in selfs.items()]
    publish_pct = round(100 * publish / total, 1)
    lines.append(f"  publishing to Redis (flush + redis-py pipeline tasks): {publish_pct} %")
    return {
        "samples": total,
        "idle_samples": idle,
        "inclusive_pct": shares,
        "self_pct": selfs,
        "publish_pct": publish_pct,
        "summary": "\n".join(lines),
    }


class PySpy:
    """`py-spy record` of `pid` for `seconds`, started on demand."""

    def __init__(self, pid: int, out: Path, seconds: float) -> None:
        self._pid = pid
        self._out = out
        self._seconds = seconds
        self._process: subprocess.Popen[bytes] | None = None
        self.started = False

    def start(self) -> None:
        self.started = True
        binary = _py_spy()
        if binary is None:
            return
        command = [binary, "record", "--pid", str(self._pid), "--duration", str(int(self._seconds))]
        command += ["--format", "raw", "--rate", "50", "--nonblocking", "--output", str(self._out)]
        self._process = subprocess.Popen(  # noqa: S603 - py-spy beside this interpreter or on PATH
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def finish(self) -> dict[str, Any]:
        if self._process is None:
            why = (
                "the run ended first" if not self.started else "not installed (pip install py-spy)"
            )
            return {"summary": f"py-spy: no profile: {why}"}
        try:
            self._process.wait(timeout=self._seconds + 30)
        except subprocess.TimeoutExpired:
            self.kill()
        if not self._out.exists():
            return {"summary": f"py-spy: no output (exit {self._process.returncode})"}
        result = summarise(self._out.read_text())
        result["raw"] = str(self._out)
        return result

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
