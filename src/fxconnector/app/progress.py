"""Progress of long work (catch-up, warmup, backfill, migrate, audit) and the minute summary.

Rules:
- On a terminal, a `rich` progress bar on stderr (one line per task). Otherwise (a pipe, a file,
  journald) one JSON line per task on stderr at most every `every_s` seconds and at its end, in
  the shape of the log lines (`ts_ms`, `level`, `logger`, `event`, fields): `event` is
  `progress`, fields `task`, `done`, `total`, `percent`.
- The pacing clock is injected (a monotonic `Callable[[], float]`), as is the summary's
  (epoch ms handed to `MinuteSummary.tick`), so tests never wait.
- Progress is for people: it never raises into the work it reports on, and `finish()` is
  idempotent.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fxconnector.app import logs
from fxconnector.core.utils.json_codec import encode

#: Seconds between two JSON progress lines of one task (not a terminal).
EVERY_S = 2.0
SUMMARY_PERIOD_MS = 60_000
LOGGER = "fxconnector.progress"


class ProgressReport:
    """Several tasks' progress: one rich display on a terminal, JSON lines otherwise."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        terminal: bool | None = None,
    ) -> None:
        self._stream = stream or sys.stderr
        self._every_s = every_s
        self._clock = clock
        is_terminal = self._stream.isatty() if terminal is None else terminal
        self._rich: Progress | None = None
        if is_terminal:
            self._rich = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(file=self._stream, force_terminal=True),
                redirect_stdout=False,
                redirect_stderr=False,
            )
        self._open = 0

    def task(self, label: str, total: int = 0) -> ProgressTask:
        """A new task shown under `label`."""
        if self._rich is not None and not self._open:
            self._rich.start()
        self._open += 1
        task_id = None if self._rich is None else self._rich.add_task(label, total=total or None)
        task = ProgressTask(self, label, task_id)
        if total:
            task.update(0, total)  # the work has started: say so before the first step ends
        return task

    def _draw(self, task_id: Any, done: int, total: int) -> None:
        assert self._rich is not None
        self._rich.update(task_id, completed=done, total=total or None)

    def _line(self, label: str, done: int, total: int) -> None:
        fields = {
            "ts_ms": time.time_ns() // 1_000_000,
            "level": "info",
            "logger": LOGGER,
            "event": "progress",
            "task": label,
            "done": done,
            "total": total,
            "percent": round(100 * done / total, 1) if total else None,
        }
        self._stream.write(encode(fields).decode() + "\n")
        self._stream.flush()

    def _closed(self) -> None:
        self._open -= 1
        if self._rich is not None and not self._open:
            self._rich.stop()


class ProgressTask:
    """One task of a `ProgressReport`: `update(done, total)` as it goes, `finish()` at the end."""

    def __init__(self, report: ProgressReport, label: str, task_id: Any) -> None:
        self._report = report
        self._label = label
        self._task_id = task_id
        self._last_line_s: float | None = None
        self._said: tuple[int, int] | None = None
        self._done = 0
        self._total = 0
        self._finished = False

    def update(self, done: int, total: int) -> None:
        if self._finished:
            return
        self._done, self._total = done, total
        report = self._report
        if report._rich is not None:
            report._draw(self._task_id, done, total)
            return
        now_s = report._clock()
        if self._last_line_s is None or now_s - self._last_line_s >= report._every_s:
            self._last_line_s = now_s
            self._say(done, total)

    def finish(self) -> None:
        """The task is over: a last line (the final count), the display closed when last."""
        if self._finished:
            return
        self._finished = True
        report = self._report
        if report._rich is None:
            if self._said != (self._done, self._total):
                self._say(self._done, self._total)
        else:
            report._draw(self._task_id, self._done, self._total)
        report._closed()

    def _say(self, done: int, total: int) -> None:
        self._said = (done, total)
        self._report._line(self._label, done, total)


class ProgressBar:
    """One task on its own report: what the commands (cmd, replay, migrate, audit) use."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self._task = ProgressReport(stream).task(label)

    def update(self, done: int, total: int) -> None:
        self._task.update(done, total)

    def finish(self) -> None:
        self._task.finish()


class MinuteSummary:
    """One info line a minute while the connector runs: finals stored, the age of the newest
    final (seconds from its close_ms to this line: up to a minute plus the final's own delay,
    so not the final lag the history plan bounds), rejected ticks and broker reconnects (each
    since the last line, and totals)."""

    def __init__(
        self,
        logger: logging.Logger,
        started_ms: int,
        period_ms: int = SUMMARY_PERIOD_MS,
    ) -> None:
        self._log = logger
        self._period_ms = period_ms
        self._next_ms = started_ms + period_ms
        self._seen = (0, 0, 0)

    def tick(
        self,
        now_ms: int,
        *,
        finals: int,
        newest_final_close_ms: int | None,
        rejects: int,
        reconnects: int,
    ) -> bool:
        """Log the summary when a period has passed since the last one; True when it did."""
        if now_ms < self._next_ms:
            return False
        self._next_ms = now_ms + self._period_ms
        last_finals, last_rejects, last_reconnects = self._seen
        self._seen = (finals, rejects, reconnects)
        age_s = None
        if newest_final_close_ms is not None:
            age_s = round((now_ms - newest_final_close_ms) / 1000, 1)
        logs.emit(
            self._log,
            logging.INFO,
            "connector.summary",
            finals=finals - last_finals,
            finals_total=finals,
            newest_final_age_s=age_s,
            rejects=rejects - last_rejects,
            rejects_total=rejects,
            reconnects=reconnects - last_reconnects,
            reconnects_total=reconnects,
        )
        return True
