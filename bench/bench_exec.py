"""Submit-to-ack latency on the paper gateway (issue 15 point 6).

Subject: `ExecEngine.submit` of a market order, from the call to its return with the order
FILLED: the risk decision, the journal append with its fsync, the paper gateway's own journaled
books (a second fsync), the fill and position applied and journaled (a third fsync). Real parts:
the core, both journals on the real disk (a temporary folder), the paper gateway; a manual clock
(the risk checks need an open market, whatever today is).

Baseline, same process, same folder, interleaved round by round: the durable floor of the same
work, three fsynced appends of the same lines to two files (the exec journal's and the paper
books' pattern) without any decision; the ratio is the floor's time over the subject's (how much
of a submit is the disk).

Figures: p50 / p99 / max per order pooled over the rounds, and the median of the rounds' p99 with
its min-max. Run alone with `python -m bench.bench_exec`, or in `make bench`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Final

from bench.runner import Row
from fxconnector.config.calendars import load_calendar
from fxconnector.core.model.intent import OrderIntent, OrderType, Side
from fxconnector.core.model.tick import Tick
from fxconnector.core.utils import json_codec
from fxconnector.execution.core import ExecCore
from fxconnector.execution.risk.limits import RiskLimits, SymbolLimits, TraderLimits
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.execution.engine import ExecEngine
from fxconnector.runtime.execution.gateways.paper import PaperGateway
from fxconnector.runtime.execution.journal import exec_journal

#: Tuesday 2026-01-06 12:00 UTC, the market is open.
OPEN_MS: Final = 1_767_700_800_000
ORDERS: Final = 200
ROUNDS: Final = 5

LIMITS: Final = RiskLimits(
    {
        "bench": TraderLimits(
            {"EURUSD": SymbolLimits(1_000, 10**9, 1e15, 1e15)}, max_orders_per_minute=10**6
        )
    }
)


async def _subject(root: Path, round_: int) -> tuple[list[float], list[bytes]]:
    clock = ManualClock(OPEN_MS + round_ * 3_600_000)
    calendar = load_calendar("fx_ny", now_ms=OPEN_MS)
    lines: list[bytes] = []
    engine = ExecEngine(
        ExecCore(LIMITS, calendar),
        exec_journal(root / f"exec{round_}"),
        PaperGateway(root / f"paper{round_}", clock),
        clock,
        on_events=lambda events: lines.append(json_codec.encode(list(events))),
    )
    await engine.start(run_timers=False)
    latencies = []
    for n in range(ORDERS):
        clock.advance(1)
        engine.on_quote(Tick("EURUSD", 1.1, 1.1002, clock.now_ms()))
        side = Side.BUY if n % 2 == 0 else Side.SELL
        intent = OrderIntent(
            f"r{round_}-{n}", "bench", "EURUSD", side, 100, OrderType.MARKET, clock.now_ms()
        )
        start = time.perf_counter()
        submission = await engine.submit(intent)
        latencies.append(time.perf_counter() - start)
        assert submission.order is not None
        assert submission.order.filled_units == 100, submission
    await engine.close()
    return latencies, lines


def _floor(root: Path, round_: int, lines: list[bytes]) -> list[float]:
    """Per order, the subject's three durable writes in its pattern: its submit line to one file,
    a paper books line (fill-sized) to a second file, its fill line to the first; each fsynced,
    nothing else."""
    journal = os.open(root / f"floor{round_}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    books = os.open(
        root / f"floor{round_}-paper.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
    )
    latencies = []
    try:
        for n in range(ORDERS):
            submit_line, fill_line = lines[2 * n], lines[2 * n + 1]
            start = time.perf_counter()
            for fd, line in ((journal, submit_line), (books, fill_line), (journal, fill_line)):
                os.write(fd, line + b"\n")
                os.fsync(fd)
            latencies.append(time.perf_counter() - start)
    finally:
        os.close(journal)
        os.close(books)
    return latencies


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure() -> tuple[list[list[float]], list[list[float]]]:
    subject: list[list[float]] = []
    floor: list[list[float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-exec-", dir=os.getcwd()) as tmp:
        root = Path(tmp)
        _, warm = asyncio.run(_subject(root, ROUNDS))  # warm-up of both, not counted
        _floor(root, ROUNDS, warm)
        for round_ in range(ROUNDS):
            # The floor needs the subject's lines: the order alternates by writing the floor of
            # the previous round's lines first on odd rounds.
            if round_ % 2:
                floor.append(_floor(root, round_, warm))
                subject_times, warm = asyncio.run(_subject(root, round_))
                subject.append(subject_times)
            else:
                subject_times, warm = asyncio.run(_subject(root, round_))
                subject.append(subject_times)
                floor.append(_floor(root, round_, warm))
    return subject, floor


def run() -> list[Row]:
    subject, floor = measure()
    pooled = [x for r in subject for x in r]
    pooled_floor = [x for r in floor for x in r]
    p99s = [_p(r, 0.99) * 1e3 for r in subject]
    print(
        f"exec submit->filled (paper, {ROUNDS}x{ORDERS} orders): "
        f"p50 {_p(pooled, 0.5) * 1e3:.3f} ms, p99 {_p(pooled, 0.99) * 1e3:.3f} ms, "
        f"max {max(pooled) * 1e3:.3f} ms; median of round p99 "
        f"{statistics.median(p99s):.3f} ms ({min(p99s):.3f}-{max(p99s):.3f}); "
        f"fsync floor p50 {_p(pooled_floor, 0.5) * 1e3:.3f} ms, "
        f"p99 {_p(pooled_floor, 0.99) * 1e3:.3f} ms"
    )
    ratios = [
        statistics.median(f) / statistics.median(s) for s, f in zip(subject, floor, strict=True)
    ]
    return [
        Row(
            "exec submit->filled, paper (per order)",
            len(pooled),
            "orders",
            sum(statistics.median(r) for r in subject) / len(subject) * len(pooled),
            "3 fsyncs",
            sum(statistics.median(r) for r in floor) / len(floor) * len(pooled),
            (min(ratios), max(ratios)),
        )
    ]


if __name__ == "__main__":
    from bench.runner import print_table

    print_table(run())
