"""A/B timing: subject and baseline alternated run by run, so drifting machine load hits both."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Spread:
    """Median wall time of several runs, with the fastest and the slowest."""

    median: float
    low: float
    high: float

    def rates(self, items: int) -> str:
        """`min-max` of the rate, as `1.2-1.4M`."""
        from bench.runner import human

        return f"{human(items / self.high)}-{human(items / self.low)}"


def spread(times: list[float]) -> Spread:
    return Spread(statistics.median(times), min(times), max(times))


def interleaved(
    subject: Callable[[], object], baseline: Callable[[], object], repeat: int = 5
) -> tuple[Spread, Spread]:
    """Wall times of `repeat` calls of each, alternated (after one warm-up call of each)."""
    subject()
    baseline()
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeat):
        for fn, out in ((subject, a), (baseline, b)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return spread(a), spread(b)
