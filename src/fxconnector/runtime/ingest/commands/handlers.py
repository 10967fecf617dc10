"""What each command does (DESIGN §9), over the pipeline, the store and the sink.

Rules:
- Every broker call goes through the pipeline's `fetch_range` (the shared history budget at heavy
  priority, the same contract checks, the same quiet rule, store path and derivation as the
  fast path). A range the broker has not provably passed is reported in `pending_ranges`
  (still missing, never quiet); refused candles are counted in `refused_candles`.
- tail_guard audits coverage (closed / final / quiet / missing) over the window for 1m and checks
  every derived timeframe; with `repair` it fetches the missing ranges under the repair caps
  (at most `max_gap_mins` per gap, `max_bars_per_run` bars per run, only the last
  `repair_window_hours`), re-derives what they touched and publishes the changes as revisions.
  Work over a cap is reported as deferred, never silently dropped.
- Results are plain JSON-able dicts (they go to status and to the CLI).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.coverage import MinuteState, classify, count, runs
from fxconnector.core.errors import CommandError
from fxconnector.core.model.command import (
    BackfillCommand,
    Command,
    RebuildDerivedCommand,
    RepublishTailCommand,
    TailGuardCommand,
    WarmupCommand,
)
from fxconnector.core.time_geom import HOUR_MS, MINUTE_MS, Timeframe, iso_utc
from fxconnector.runtime.ingest.polling.pipeline import Pipeline, RangeResult
from fxconnector.runtime.publish.sink import EventSink
from fxconnector.runtime.store.port import FinalStore

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class RepairCaps:
    max_gap_mins: int = 240
    max_bars_per_run: int = 5_000
    repair_window_hours: int = 24


@dataclass(slots=True)
class CommandContext:
    pipeline: Pipeline
    store: FinalStore
    sink: EventSink
    calendars: Mapping[str, TradingCalendar]
    timeframes: tuple[Timeframe, ...]
    caps: RepairCaps


async def execute(
    command: Command, ctx: CommandContext, now_ms: int, progress: Progress | None = None
) -> dict[str, Any]:
    """Run one validated command; raise CommandError when it cannot run."""
    if isinstance(command, WarmupCommand):
        return await _ranges(
            ctx,
            "warmup",
            [
                (s, now_ms - command.args.lookback_mins * MINUTE_MS, now_ms)
                for s in command.args.symbols
            ],
            now_ms,
            progress,
        )
    if isinstance(command, BackfillCommand):
        args = command.args
        _range_ok(args.from_ms, args.to_ms)
        return await _ranges(
            ctx, "backfill", [(args.symbol, args.from_ms, args.to_ms)], now_ms, progress
        )
    if isinstance(command, TailGuardCommand):
        return await tail_guard(ctx, command, now_ms, progress)
    if isinstance(command, RepublishTailCommand):
        tail = command.args
        _known(ctx, tail.symbol)
        bars = list(ctx.store.bars(tail.symbol, tail.tf))[-tail.bars :]
        ctx.sink.finals(bars)
        return {"republished": len(bars)}
    if isinstance(command, RebuildDerivedCommand):
        span = command.args
        _range_ok(span.from_ms, span.to_ms)
        _known(ctx, span.symbol)
        ctx.pipeline.derived.touch(span.symbol, span.from_ms, span.to_ms)
        changed = ctx.pipeline.derived.run(now_ms)
        ctx.store.flush()
        ctx.sink.finals(changed)
        return {"rederived": len(changed), "revisions": sum(1 for e in changed if e.rev)}
    raise CommandError(f"unknown command {command!r}")  # pragma: no cover - the union is closed


async def _ranges(
    ctx: CommandContext,
    caller: str,
    ranges: list[tuple[str, int, int]],
    now_ms: int,
    progress: Progress | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for index, (symbol, from_ms, to_ms) in enumerate(ranges):
        _known(ctx, symbol)

        def step(done: int, total: int, index: int = index) -> None:
            if progress is not None:
                progress(index * 1000 + done * 1000 // max(total, 1), len(ranges) * 1000)

        result = await ctx.pipeline.fetch_range(
            symbol, from_ms, to_ms, caller=caller, now_ms=now_ms, progress=step
        )
        out[symbol] = _result(result)
    return {"symbols": out}


async def tail_guard(
    ctx: CommandContext, command: TailGuardCommand, now_ms: int, progress: Progress | None
) -> dict[str, Any]:
    args = command.args
    end = now_ms - now_ms % MINUTE_MS - MINUTE_MS
    start = end - args.window_hours * HOUR_MS
    report: dict[str, Any] = {}
    budget = ctx.caps.max_bars_per_run
    for symbol in args.symbols:
        _known(ctx, symbol)
        before = audit(ctx, symbol, start, end)
        entry: dict[str, Any] = {"before": before}
        if args.repair:
            repair_from = max(start, end - ctx.caps.repair_window_hours * HOUR_MS)
            gaps, deferred = _plan(before["missing_ranges_ms"], repair_from, ctx.caps, budget)
            repaired = []
            for index, (a, b) in enumerate(gaps):
                result = await ctx.pipeline.fetch_range(
                    symbol, a, b, caller="tail_guard", now_ms=now_ms
                )
                repaired.append(_result(result))
                budget -= (b - a) // MINUTE_MS
                if progress is not None:
                    progress(index + 1, len(gaps))
            # Only the buckets the store says are underived or stale (the gaps' own buckets
            # were derived by fetch_range).
            ctx.pipeline.derived.recover(symbol, start, end)
            rederived = ctx.pipeline.derived.run(now_ms)
            ctx.store.flush()
            ctx.sink.finals(rederived)
            entry["repaired"] = repaired
            entry["rederived"] = len(rederived)
            entry["deferred_ranges"] = [[iso_utc(a), iso_utc(b)] for a, b in deferred]
            entry["deferred_minutes"] = sum((b - a) // MINUTE_MS for a, b in deferred)
            entry["after"] = audit(ctx, symbol, start, end)
        report[symbol] = entry
    return {"window": [iso_utc(start), iso_utc(end)], "symbols": report}


def audit(ctx: CommandContext, symbol: str, start: int, end: int) -> dict[str, Any]:
    """Coverage of 1m over `[start, end)` and derived buckets that should exist but do not
    (or differ from their minutes)."""
    calendar = ctx.calendars[symbol]
    finals = list(ctx.store.bars(symbol, Timeframe.M1, start, end))
    opens = np.fromiter((b.open_ms for b in finals), np.int64, len(finals))
    fetched = ctx.store.fetched_intervals(symbol, start, end)
    states = classify(start, end, calendar, opens, fetched)
    counts = count(states)
    missing = runs(start, states, MinuteState.MISSING)
    derived_missing = {
        tf.value: len(opens) for tf, opens in ctx.pipeline.derived.gaps(symbol, start, end).items()
    }
    return {
        "coverage": {
            "final": counts.final,
            "quiet": counts.quiet,
            "missing": counts.missing,
            "closed": counts.closed,
        },
        "missing_ranges": [[iso_utc(a), iso_utc(b)] for a, b in missing],
        "missing_ranges_ms": missing,
        "derived_missing": derived_missing,
    }


def _plan(
    missing: list[tuple[int, int]], repair_from: int, caps: RepairCaps, budget_bars: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Missing ranges cut to the caps: (to fetch now, deferred)."""
    todo: list[tuple[int, int]] = []
    deferred: list[tuple[int, int]] = []
    for a, b in missing:
        if b <= repair_from:
            deferred.append((a, b))
            continue
        a = max(a, repair_from)
        while a < b:
            piece = min(b, a + caps.max_gap_mins * MINUTE_MS)
            minutes = (piece - a) // MINUTE_MS
            if minutes > budget_bars:
                deferred.append((a, b))
                break
            todo.append((a, piece))
            budget_bars -= minutes
            a = piece
    return todo, deferred


def _result(result: RangeResult) -> dict[str, Any]:
    return {
        "from": iso_utc(result.from_ms),
        "to": iso_utc(result.to_ms),
        "bars_fetched": result.bars_fetched,
        "new": result.new_bars,
        "revisions": result.revisions,
        "derived": result.derived,
        "failed_chunks": [[iso_utc(a), iso_utc(b), why] for a, b, why in result.failed_chunks],
        "refused_candles": result.refused,
        "pending_ranges": [[iso_utc(a), iso_utc(b)] for a, b in result.pending],
    }


def _known(ctx: CommandContext, symbol: str) -> None:
    if symbol not in ctx.calendars:
        known = ", ".join(sorted(ctx.calendars))
        raise CommandError(f"unknown symbol {symbol} (this connector has {known})")


def _range_ok(from_ms: int, to_ms: int) -> None:
    if to_ms <= from_ms:
        raise CommandError(
            f"empty range: to ({iso_utc(to_ms)}) is not after from ({iso_utc(from_ms)})"
        )
