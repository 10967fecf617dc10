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
        print(f"{row.name:44} {rate:>16} {base:36} {row.ratio:>7.2f}x")


def main() -> int:
    from bench import (
        bench_buckets,
        bench_commands,
        bench_final_latency,
        bench_http,
        bench_pipeline,
        bench_stall,
        bench_store,
        bench_surface,
    )

    rows: list[Row] = []
    modules = (
        bench_buckets,
        bench_pipeline,
        bench_store,
        bench_surface,
        bench_http,
        bench_commands,
        bench_stall,
        bench_final_latency,
    )
    for module in modules:
        rows.extend(module.run())
    print_table(rows)
    sys.stdout.flush()
    return 0
