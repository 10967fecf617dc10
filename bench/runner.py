"""Benchmark runner: each benchmark times its subject and a baseline on the same data, in this
process, and reports a ratio. Figures are medians of several runs; nothing here asserts speed."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: a subject's rate next to its baseline's."""

    name: str
    items: int
    unit: str
    seconds: float
    baseline_name: str
    baseline_seconds: float
    #: The lowest and highest per-round ratio of an interleaved comparison (`interleaved`).
    ratio_range: tuple[float, float] | None = None

    @property
    def rate(self) -> float:
        return self.items / self.seconds

    @property
    def ratio(self) -> float:
        return self.baseline_seconds / self.seconds


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of `repeat` calls of `fn` (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass(frozen=True, slots=True)
class Interleaved:
    """Timings of a subject and a baseline run alternately, round after round."""

    subject: list[float]
    baseline: list[float]

    @property
    def ratios(self) -> list[float]:
        """Baseline time over subject time, per round (> 1: the subject is faster)."""
        return [b / s for s, b in zip(self.subject, self.baseline, strict=True)]

    def row(self, name: str, items: int, unit: str, baseline_name: str) -> Row:
        """A table row: median times, and the per-round ratios' range."""
        ratios = self.ratios
        return Row(
            name,
            items,
            unit,
            statistics.median(self.subject),
            baseline_name,
            statistics.median(self.baseline),
            (min(ratios), max(ratios)),
        )


def interleaved(
    subject: Callable[[], object], baseline: Callable[[], object], rounds: int = 7
) -> Interleaved:
    """Time `subject` and `baseline` alternately for `rounds` rounds (after one warm-up call of
    each), swapping which goes first every round, so drifting machine load hits both alike."""
    subject()
    baseline()
    times: dict[str, list[float]] = {"subject": [], "baseline": []}
    for index in range(rounds):
        pair = [("subject", subject), ("baseline", baseline)]
        for key, fn in pair if index % 2 == 0 else pair[::-1]:
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return Interleaved(times["subject"], times["baseline"])


def human(rate: float) -> str:
    """A rate with a k or M suffix."""
    if rate >= 1e6:
        return f"{rate / 1e6:,.2f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:,.1f}k"
    return f"{rate:,.0f}"


def print_table(rows: Iterable[Row]) -> None:
    header = f"{'benchmark':44} {'rate':>16} {'baseline':36} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        rate = f"{human(row.rate)} {row.unit}/s"
        base = f"{row.baseline_name} {human(row.items / row.baseline_seconds)}/s"
        spread = "" if row.ratio_range is None else " ({:.2f}-{:.2f})".format(*row.ratio_range)
        print(f"{row.name:44} {rate:>16} {base:36} {row.ratio:>7.2f}x{spread}")


def main() -> int:
    from bench import (
        bench_buckets,
        bench_commands,
        bench_exec,
        bench_exec_socket,
        bench_final_latency,
        bench_http,
        bench_pipeline,
        bench_replay,
        bench_smc,
        bench_stall,
        bench_store,
        bench_surface,
    )

    rows: list[Row] = []
    modules = (
        bench_buckets,
        bench_pipeline,
        bench_replay,
        bench_store,
        bench_surface,
        bench_http,
        bench_commands,
        bench_stall,
        bench_final_latency,
        bench_exec,
        bench_smc,
        bench_exec_socket,
    )
    for module in modules:
        rows.extend(module.run())
    print_table(rows)
    sys.stdout.flush()
    return 0
