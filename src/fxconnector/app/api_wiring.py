"""The HTTP API's dependencies in a running connector (`ApiDeps`): history, previews, status.

Rules: history of this process's symbols comes from the tail cache, and from the store (off
the event loop, at most `limit` bars read) only when the cache is short; another process's
symbol (a shared namespace) is served from its Redis snapshot alone. A higher-timeframe
preview includes its bucket's finals from before the first live tick (`LiveState.complete`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fxconnector.app.composition import Parts
from fxconnector.app.live_loops import LiveState
from fxconnector.app.live_status import build_facts, status_symbol
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.publish.event_check import Rejects
from fxconnector.runtime.publish.host_guard import HostPolicy
from fxconnector.runtime.publish.http_api import ApiDeps
from fxconnector.runtime.publish.redis_surface import RedisSurface
from fxconnector.runtime.publish.surface_reader import SurfaceReader
from fxconnector.runtime.status.builder import encode_bounded
from fxconnector.runtime.status.health import readiness
from fxconnector.runtime.store.cache_tail import first_finals, last_finals

UI_DIR = Path(__file__).resolve().parents[1] / "ui" / "web"


def _preview(
    parts: Parts, pipeline: Pipeline, live: LiveState, symbol: str, tf: Timeframe
) -> OhlcvEvent | None:
    preview = pipeline.builder.preview(symbol, tf)
    return None if preview is None else live.complete(parts, pipeline, preview)


def api_deps(
    parts: Parts, pipeline: Pipeline, surface: RedisSurface, live: LiveState, reader: SurfaceReader
) -> ApiDeps:
    async def history(
        symbol: str, tf: Timeframe, from_ms: int | None, to_ms: int | None, limit: int
    ) -> list[OhlcvEvent]:
        if symbol not in own:
            return []  # another process's symbol: served from its Redis snapshot alone
        if from_ms is None:
            # The newest `limit` before `to_ms`: the tail cache holds them unless it is full
            # and still short, and only then is the store read.
            cached = parts.tail.tail(symbol, tf, limit, None, to_ms)
            if len(cached) >= limit or len(cached) < parts.tail.window:
                return [bar.event() for bar in cached]
            newest = await asyncio.to_thread(last_finals, parts.store, symbol, tf, limit, to_ms)
            return [bar.event() for bar in newest]
        # At most `limit` bars read, off the event loop, whatever the range.
        stored = await asyncio.to_thread(
            first_finals, parts.store, symbol, tf, from_ms, to_ms, limit
        )
        return [bar.event() for bar in stored]

    own = frozenset(parts.config.broker.symbols)
    return ApiDeps(
        reader=reader,
        symbols=parts.config.broker.symbols,
        timeframes=parts.config.bars.timeframes,
        history=history,
        preview=lambda symbol, tf: (
            _preview(parts, pipeline, live, symbol, tf) if symbol in own else None
        ),
        status=lambda: encode_bounded(
            parts.status_builder.build(
                build_facts(parts, pipeline, surface, live, parts.clock.now_ms())
            )
        ),
        status_symbol=lambda symbol: status_symbol(parts, pipeline, live, symbol),
        ready=lambda: readiness(live.ssot_state, surface.state),
        metrics_registry=parts.metrics.registry,
        ui_dir=UI_DIR if (UI_DIR / "index.html").is_file() else None,
        calendars=parts.calendars,
        rejects=live.read_rejects or Rejects(parts.clock.now_ms),
        guard=HostPolicy(
            bind_host=parts.config.http.bind.rpartition(":")[0],
            allowed_hosts=parts.config.http.allowed_hosts,
            allowed_origins=parts.config.http.allowed_origins,
        ),
    )
