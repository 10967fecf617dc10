"""The connector's live loops and the facts they share (started by `lifecycle.run`).

Rules: one process, one event loop: the loops share `LiveState` without locks. `ingest` only
feeds the live builder and marks the symbol dirty; the clock loop runs close detection and
derivation (which may wait on the broker) beside the preview pump (which never does: a slow
history call must not stop previews or the tick cache). A broker fault (`sessions`) makes the
minutes around it doubtful (`Pipeline.note_outage`) and is kept once for status errors[].
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field

from fxconnector.app import logs
from fxconnector.app.composition import Parts
from fxconnector.app.progress import ProgressTask
from fxconnector.core.builders.derive import BucketHead, prepend_head
from fxconnector.core.coverage import CoverageCounts
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.status import BrokerState, ErrorEntry, SsotState
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.runtime.ingest.commands.auto_repair import RepairScheduler
from fxconnector.runtime.ingest.commands.runner import CommandRunner
from fxconnector.runtime.ingest.polling.live import advance_loop, preview_loop
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.publish.event_check import Rejects
from fxconnector.runtime.publish.redis_surface import RedisSurface

log = logging.getLogger("fxconnector.lifecycle")


@dataclass(slots=True)
class LiveState:
    """Mutable facts the loops share (one process, one event loop)."""

    ssot_state: SsotState = SsotState.LOADING
    broker_state: BrokerState = BrokerState.CONNECTING
    reconnects: int = 0
    coverage: dict[str, CoverageCounts] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    last_ticks: dict[str, Tick] = field(default_factory=dict)
    runner: CommandRunner | None = None
    repair: RepairScheduler | None = None
    underived: dict[str, int] = field(default_factory=dict)
    #: Each symbol's status_symbol_v1 JSON as the status loop last built (and wrote) it.
    status_symbols: dict[str, bytes] = field(default_factory=dict)
    #: The running command's progress on the console: (req_id, its task).
    command_shown: tuple[str, ProgressTask] | None = None
    #: Per (symbol, tf): the bucket live ticks joined mid-way (its open), the fast path's
    #: progress its head was read at (None: whole, kept) and the folded head.
    heads: dict[tuple[str, Timeframe], tuple[int, int | None, BucketHead | None]] = field(
        default_factory=dict
    )
    #: Broker sessions lost (a failed login included), for status errors[].
    broker_errors: deque[ErrorEntry] = field(default_factory=lambda: deque(maxlen=20))
    corrupt_lines: list[str] = field(default_factory=list)  # skipped by the store's open()
    #: Invalid events and snapshots read back from Redis by the API, for status errors[].
    read_rejects: Rejects | None = None

    def complete(self, parts: Parts, pipeline: Pipeline, preview: OhlcvEvent) -> OhlcvEvent:
        """A higher-tf preview including the bucket's finals from before the first live tick."""
        first = pipeline.builder.first_minute_ms(preview.symbol)
        if preview.tf is Timeframe.M1 or first is None or preview.open_ms >= first:
            return preview
        # A head complete up to the first live minute will not change (but by revision): kept
        # for the bucket. One that is not yet (the broker has not passed a minute of it) is
        # read again when the fast path moves on, not on every publish.
        key = (preview.symbol, preview.tf)
        progress = pipeline.progress_ms(preview.symbol)
        cached = self.heads.get(key)
        if cached is not None and cached[0] == preview.open_ms and cached[1] in (None, progress):
            return prepend_head(preview, cached[2])
        head = BucketHead.fold(
            [
                b.event()
                for b in parts.store.bars(preview.symbol, Timeframe.M1, preview.open_ms, first)
            ]
        )
        whole = head is not None and head.last_open_ms == first - MINUTE_MS
        self.heads[key] = (preview.open_ms, None if whole else progress, head)
        return prepend_head(preview, head)


async def ingest(parts: Parts, pipeline: Pipeline, live: LiveState) -> None:
    on_tick = pipeline.on_tick
    now = parts.clock.now_ms
    async for tick in parts.broker.ticks():
        if on_tick(tick, now()):
            live.dirty.add(tick.symbol)
            live.last_ticks[tick.symbol] = tick


async def sessions(parts: Parts, pipeline: Pipeline, live: LiveState) -> None:
    down_since: int | None = None
    async for event in parts.broker.session_events():
        down = event.state in (BrokerState.DISCONNECTED, BrokerState.STALE)
        if down and down_since is None:
            down_since = event.ts_ms or parts.clock.now_ms()
        if event.state is BrokerState.CONNECTED and down_since is not None:
            # Counted against the fault, not the previous state: adapters pass through
            # CONNECTING on their way back (STALE -> CONNECTING -> CONNECTED).
            live.reconnects += 1
            # The minute before the fault and the one after are doubtful too.
            pipeline.note_outage(down_since - MINUTE_MS, parts.clock.now_ms() + MINUTE_MS)
            down_since = None
        if down or event.state is BrokerState.STOPPED:
            code, message = f"broker.{event.state.value}", event.detail[:500]
            newest = live.broker_errors[-1] if live.broker_errors else None
            if newest is None or (newest.code, newest.message) != (code, message):
                ts = event.ts_ms or parts.clock.now_ms()
                live.broker_errors.append(ErrorEntry(ts=ts, code=code, message=message))
        live.broker_state = event.state
        logs.emit(log, logging.INFO, "broker.session", state=event.state.value, detail=event.detail)


async def clock_loop(
    parts: Parts, pipeline: Pipeline, surface: RedisSurface, live: LiveState, stop: asyncio.Event
) -> None:
    """Close detection and derivation (may wait on the broker) beside the preview pump (never
    waits on it): a slow history call must not stop previews or the tick cache."""
    period_s = max(parts.config.surface.preview_interval_ms, 50) / 1000

    def ssot_state() -> None:
        if live.ssot_state is SsotState.LOADING or live.ssot_state is SsotState.EMPTY:
            has_final = any(
                parts.store.last_open_ms(s, Timeframe.M1) is not None
                for s in parts.config.broker.symbols
            )
            live.ssot_state = SsotState.OK if has_final else SsotState.EMPTY

    def pump() -> None:
        for symbol in list(live.dirty):
            surface.previews(
                [live.complete(parts, pipeline, p) for p in pipeline.builder.previews(symbol)]
            )
            tick = live.last_ticks.get(symbol)
            if tick is not None:
                surface.tick(tick)
        live.dirty.clear()
        parts.surface_backlog = surface.backlog

    now = parts.clock.now_ms
    await asyncio.gather(
        advance_loop(pipeline, parts.clock, stop, ssot_state),
        preview_loop(pipeline, now, period_s, stop, pump),
    )
