"""The status of a running connector: its facts, the status loop, the console lines.

Rules: every `STATUS_PERIOD_S` the loop builds the summary and every symbol's detail from the
live facts and writes them to Redis with an expiry (a Redis outage is counted by the surface,
never raised); coverage and the underived buckets of the last 24 hours are recounted every
`COVERAGE_PERIOD_S`, a symbol at a time, the event loop given back between symbols. The HTTP
status handlers read the same facts (`build_facts`, `status_symbol`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

import numpy as np

from fxconnector.app.composition import Parts
from fxconnector.app.live_loops import LiveState
from fxconnector.app.progress import MinuteSummary, ProgressReport
from fxconnector.core.coverage import CoverageCounts, classify, count
from fxconnector.core.model.status import (
    BrokerState,
    CommandState,
    ErrorEntry,
    RepairState,
    SurfaceState,
)
from fxconnector.core.time_geom import HOUR_MS, MINUTE_MS, Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.publish.redis_surface import RedisSurface
from fxconnector.runtime.publish.status_writer import StatusPayloads
from fxconnector.runtime.status.builder import Facts, SymbolFacts, encode_bounded

log = logging.getLogger("fxconnector.lifecycle")
STATUS_PERIOD_S = 1.0
COVERAGE_PERIOD_S = 10.0


async def status_loop(
    parts: Parts, pipeline: Pipeline, surface: RedisSurface, live: LiveState, stop: asyncio.Event
) -> None:
    last_coverage = -COVERAGE_PERIOD_S
    loop = asyncio.get_running_loop()
    summary = MinuteSummary(log, parts.clock.now_ms())
    while not stop.is_set():
        now = parts.clock.now_ms()
        _summarize(parts, pipeline, live, summary, now)
        _show_command(live)
        if loop.time() - last_coverage >= COVERAGE_PERIOD_S:
            live.coverage = await _coverage(parts, now)
            live.underived = await _underived(parts, pipeline, now)
            parts.metrics.derived_incomplete.set(sum(live.underived.values()))
            last_coverage = loop.time()
        await write_status(parts, pipeline, surface, live, now)
        errors = status_errors(pipeline, surface, live)[-20:]
        last = live.runner.last if live.runner is not None else None
        await surface.write_status_snapshot(encode({"last_command": last, "errors": errors}))
        await asyncio.sleep(STATUS_PERIOD_S)


async def write_status(
    parts: Parts, pipeline: Pipeline, surface: RedisSurface, live: LiveState, now: int
) -> bool:
    """Build the summary and every symbol's detail, keep the details for `/api/status?symbol=`
    and write them all to Redis (False: Redis unavailable, counted by the surface)."""
    facts = build_facts(parts, pipeline, surface, live, now)
    builder = parts.status_builder
    live.status_symbols = {s.symbol: encode(builder.build_symbol(now, s)) for s in facts.symbols}
    payloads = StatusPayloads(
        process_id=builder.process_id,
        summary=encode_bounded(builder.build(facts)),
        symbols=live.status_symbols,
    )
    return await surface.write_status(payloads, ttl_s=int(STATUS_PERIOD_S * 5))


def _show_command(live: LiveState) -> None:
    """A running command's progress on the console (warmup, backfill, ...), like the CLI's."""
    last = live.runner.last if live.runner is not None else None
    shown = live.command_shown
    if shown is not None and (last is None or last.req_id != shown[0]):
        shown[1].finish()
        shown = live.command_shown = None
    if last is None or (shown is None and last.state is not CommandState.RUNNING):
        return
    if shown is None:
        shown = live.command_shown = (last.req_id, ProgressReport().task(last.cmd.value))
    if last.progress is not None and last.progress.total:
        shown[1].update(last.progress.done, last.progress.total)
    if last.state is not CommandState.RUNNING:
        shown[1].finish()


def _summarize(
    parts: Parts, pipeline: Pipeline, live: LiveState, summary: MinuteSummary, now: int
) -> None:
    """The once-a-minute console line (the summary decides when a minute has passed)."""
    stats = pipeline.stats
    opens = [parts.store.last_open_ms(s, Timeframe.M1) for s in parts.config.broker.symbols]
    known = [o for o in opens if o is not None]
    summary.tick(
        now,
        finals=sum(stats.finals.values()),
        newest_final_close_ms=max(known) + MINUTE_MS - 1 if known else None,
        rejects=sum(stats.rejected.values()),
        reconnects=live.reconnects,
    )


def _symbol_facts(
    parts: Parts,
    pipeline: Pipeline,
    live: LiveState,
    symbol: str,
    now: int,
    stalled: Collection[str],
) -> SymbolFacts:
    last_final: dict[str, int | None] = {}
    for tf in parts.config.bars.timeframes:
        opened = parts.store.last_open_ms(symbol, tf)
        last_final[tf.value] = None if opened is None else opened + tf.ms - 1
    return SymbolFacts(
        symbol=symbol,
        last_final_ms=last_final,
        last_tick_ts_ms=pipeline.builder.last_tick_ms(symbol),
        final_lag_ms=pipeline.final_lag_ms(symbol, now),
        stalled=symbol in stalled,
        coverage=live.coverage.get(symbol),
        underived=live.underived.get(symbol, 0),
    )


def build_facts(
    parts: Parts, pipeline: Pipeline, surface: RedisSurface, live: LiveState, now: int
) -> Facts:
    stats = pipeline.stats
    stalled = pipeline.stalled(now)
    symbols = [
        _symbol_facts(parts, pipeline, live, s, now, stalled) for s in parts.config.broker.symbols
    ]
    known = [s.last_tick_ts_ms for s in symbols if s.last_tick_ts_ms is not None]
    degraded = []
    if surface.state is not SurfaceState.OK:
        degraded.append(f"surface_{surface.state.value}")
    if live.broker_state is not BrokerState.CONNECTED:
        degraded.append(f"broker_{live.broker_state.value}")
    if any(c.missing for c in live.coverage.values()):
        degraded.append("ssot_missing_minutes")
    if parts.budget is not None and parts.budget.deferred_reason:
        degraded.append("history_budget_deferred")
    if any(live.underived.values()):
        degraded.append("derived_incomplete")
    repair = live.repair.status() if live.repair is not None else None
    if repair is not None and repair.last_run and repair.last_run.state is RepairState.FAILED:
        degraded.append("repair_failed")
    if stalled:
        degraded.append("finals_stalled")  # which: status symbols.worst, the detail, metrics
    if live.corrupt_lines:
        degraded.append("ssot_corrupt_lines")
    return Facts(
        now_ms=now,
        broker_kind=parts.config.broker.kind,
        broker_state=live.broker_state,
        last_tick_ts_ms=max(known) if known else None,
        reconnects=live.reconnects,
        surface_state=surface.state,
        backlog=surface.backlog,
        ssot_state=live.ssot_state,
        late_ticks=pipeline.late_ticks,
        rejected=dict(stats.rejected),
        last_command=live.runner.last if live.runner is not None else None,
        errors=status_errors(pipeline, surface, live),
        degraded=degraded,
        repair=repair,
        symbols=symbols,
        final_lag_bound_s=parts.plan.bound_ms / 1000,
    )


def status_symbol(parts: Parts, pipeline: Pipeline, live: LiveState, symbol: str) -> bytes:
    """`/api/status?symbol=`: the detail the status loop wrote last (at most a period old),
    built now before its first pass."""
    written = live.status_symbols.get(symbol)
    if written is not None:
        return written
    now = parts.clock.now_ms()
    facts = _symbol_facts(parts, pipeline, live, symbol, now, pipeline.stalled(now))
    return encode(parts.status_builder.build_symbol(now, facts))


def status_errors(pipeline: Pipeline, surface: RedisSurface, live: LiveState) -> list[ErrorEntry]:
    """status errors[]: the pipeline's (history, store), the surface's (Redis outages and
    authentication failures) and the broker's lost sessions (failed logins), oldest first."""
    return sorted(
        [
            *pipeline.stats.errors,
            *surface.errors,
            *live.broker_errors,
            *(live.read_rejects.samples if live.read_rejects is not None else ()),
        ],
        key=lambda e: e.ts,
    )


def _status_window(parts: Parts, now: int) -> tuple[int, int]:
    """The last 24 hours that have had time to be fetched."""
    end = now - parts.config.broker.history_safety_delay_ms - 2 * MINUTE_MS
    end -= end % MINUTE_MS
    return end - 24 * HOUR_MS, end


async def _underived(parts: Parts, pipeline: Pipeline, now: int) -> dict[str, int]:
    """Derived buckets of the status window that should be final and are not (or differ);
    one symbol at a time, the loop given back between them."""
    start, end = _status_window(parts, now)
    out = {}
    for symbol in parts.config.broker.symbols:
        out[symbol] = pipeline.derived.incomplete(symbol, start, end)
        await asyncio.sleep(0)
    return out


async def _coverage(parts: Parts, now: int) -> dict[str, CoverageCounts]:
    """Minute classes of the last 24 hours that have had time to be fetched (a symbol at a
    time, the event loop getting a turn between symbols)."""
    start, end = _status_window(parts, now)
    out = {}
    for symbol, calendar in parts.calendars.items():
        finals = parts.store.bars(symbol, Timeframe.M1, start, end)
        opens = np.fromiter((b.open_ms for b in finals), np.int64)
        fetched = parts.store.fetched_intervals(symbol, start, end)
        out[symbol] = count(classify(start, end, calendar, opens, fetched))
        await asyncio.sleep(0)
    return out
