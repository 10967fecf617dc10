"""A progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """`update(done, total)` redraws at most every 0.1 s; `finish()` ends the line."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self._stream = stream or sys.stderr
        self._label = label
        self._width = width
        self._enabled = self._stream.isatty()
        self._last = 0.0
        self._drawn = False

    def update(self, done: int, total: int) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        share = done / total if total else 1.0
        filled = int(share * self._width)
        bar = "#" * filled + "." * (self._width - filled)
        self._stream.write(f"\r{self._label} [{bar}] {share:6.1%} {done:,}/{total:,}")
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
