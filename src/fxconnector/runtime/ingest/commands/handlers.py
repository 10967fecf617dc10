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
- Heavy work never holds the event loop (issue 11 point 4): ranges are derived a day at a time
  in bounded slices (`Pipeline.derive_ready`), audits read the store a day at a time and yield
  between days, and every slice is flushed and published before the next one starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fxconnector.core.buckets import bucket_open_array
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
from fxconnector.core.time_geom import DAY_MS, HOUR_MS, MINUTE_MS, Timeframe, iso_utc
from fxconnector.runtime.ingest.polling.derived_builder import DerivedBuilder
from fxconnector.runtime.ingest.polling.pipeline import Pipeline, RangeResult
from fxconnector.runtime.publish.sink import EventSink
from fxconnector.runtime.store.cache_tail import last_finals
from fxconnector.runtime.store.port import FinalStore

Progress = Callable[[int, int], None]
#: Finals handed to the sink between two yields by republish_tail.
REPUBLISH_SLICE = 1_000


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
        bars = list(last_finals(ctx.store, tail.symbol, tail.tf, tail.bars))
        for start in range(0, len(bars), REPUBLISH_SLICE):
            ctx.sink.finals(bars[start : start + REPUBLISH_SLICE])
            await asyncio.sleep(0)
        return {"republished": len(bars)}
    if isinstance(command, RebuildDerivedCommand):
        span = command.args
        _range_ok(span.from_ms, span.to_ms)
        _known(ctx, span.symbol)
        new, revised = await rederive(ctx, span.symbol, span.from_ms, span.to_ms, now_ms, progress)
        return {"rederived": new + revised, "revisions": revised}
    raise CommandError(f"unknown command {command!r}")  # pragma: no cover - the union is closed


async def rederive(
    ctx: CommandContext,
    symbol: str,
    from_ms: int,
    to_ms: int,
    now_ms: int,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Re-derive every bucket over `[from_ms, to_ms)`, a day at a time in bounded slices (a
    year would otherwise hold the loop for tens of seconds); (new, revised) bars published.
    The command's buckets are its own (not the live loop's), so its counts are whole."""
    new = revised = 0
    days = max(1, -(-(to_ms - from_ms) // DAY_MS))
    builder = DerivedBuilder(ctx.store, ctx.calendars, ctx.timeframes)
    for index, start in enumerate(range(from_ms, to_ms, DAY_MS)):
        builder.touch(symbol, start, min(to_ms, start + DAY_MS))
        done = await ctx.pipeline.derive_ready(now_ms, builder=builder)
        new, revised = new + done[0], revised + done[1]
        if progress is not None:
            progress(index + 1, days)
        await asyncio.sleep(0)
    return new, revised


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
        before = await audit(ctx, symbol, start, end)
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
            new, revised = await rederive(ctx, symbol, start, end, now_ms)
            entry["repaired"] = repaired
            entry["rederived"] = new + revised
            entry["deferred_ranges"] = [[iso_utc(a), iso_utc(b)] for a, b in deferred]
            entry["deferred_minutes"] = sum((b - a) // MINUTE_MS for a, b in deferred)
            entry["after"] = await audit(ctx, symbol, start, end)
        report[symbol] = entry
    return {"window": [iso_utc(start), iso_utc(end)], "symbols": report}


async def audit(ctx: CommandContext, symbol: str, start: int, end: int) -> dict[str, Any]:
    """Coverage of 1m over `[start, end)` and derived buckets that should exist but do not.

    The store is read a day at a time with a yield between days; the rest is vectorised."""
    calendar = ctx.calendars[symbol]
    opens = await _opens(ctx.store, symbol, Timeframe.M1, start, end)
    fetched = ctx.store.fetched_intervals(symbol, start, end)
    states = classify(start, end, calendar, opens, fetched)
    counts = count(states)
    missing = runs(start, states, MinuteState.MISSING)
    # missing_before[i]: missing minutes among the first i of the window.
    missing_before = np.concatenate(([0], np.cumsum(states == MinuteState.MISSING, dtype=np.int64)))
    derived_missing: dict[str, int] = {}
    for tf in ctx.timeframes:
        if tf is Timeframe.M1:
            continue
        have = await _opens(ctx.store, symbol, tf, start, end)
        buckets = np.unique(bucket_open_array(opens, tf, calendar))
        lo, hi = (buckets - start) // MINUTE_MS, (buckets + tf.ms - start) // MINUTE_MS
        inside = (lo >= 0) & (hi <= len(states))  # a bucket cut by the window's edge is skipped
        buckets, lo, hi = buckets[inside], lo[inside], hi[inside]
        complete = missing_before[hi] == missing_before[lo]
        lacking = int(np.count_nonzero(complete & ~np.isin(buckets, have)))
        if lacking:
            derived_missing[tf.value] = lacking
        await asyncio.sleep(0)
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


async def _opens(
    store: FinalStore, symbol: str, tf: Timeframe, start: int, end: int
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """open_ms of the finals of `tf` in `[start, end)`, read a day at a time."""
    parts = []
    for day in range(start, end, DAY_MS):
        bars = store.bars(symbol, tf, day, min(end, day + DAY_MS))
        parts.append(np.fromiter((b.open_ms for b in bars), np.int64))
        await asyncio.sleep(0)
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


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
