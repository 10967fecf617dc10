"""Wiring of the live SMC consumer into `fxconnector run` (DESIGN §15, docs/smc.md).

Rules:
- It runs in the connector process as one more task on its event loop, not as a child
  process: it is light (one engine step per final bar, a few per minute per series), it shares
  the process's lifecycle (started after the catch-up, stopped with the rest, a failure stops
  the connector like any task's) and it re-warms from the process's own SSOT after a restart.
  It still reads bars only through the public surface (`fxconnector.client`), on a Redis
  connection of its own, exactly as a separate process would.
- `[smc] enabled` turns it on (the demo profile does); `[smc] timeframes` (default: every
  `[bars]` one) must be served timeframes.
"""

from __future__ import annotations

import asyncio
from functools import partial

from fxconnector.app.composition import Parts
from fxconnector.core.errors import ConfigError
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.publish.redis_connect import SurfaceClient, connect_surface
from fxconnector.runtime.smc.live import SmcLive
from fxconnector.runtime.smc.metrics import register_smc_metrics
from fxconnector.runtime.store.port import FinalStore


def smc_timeframes(parts: Parts) -> tuple[Timeframe, ...]:
    config = parts.config
    chosen = config.smc.timeframes or config.bars.timeframes
    unknown = [tf.value for tf in chosen if tf not in config.bars.timeframes]
    if unknown:
        raise ConfigError(
            f"smc.timeframes {', '.join(unknown)} not in bars.timeframes "
            f"({', '.join(tf.value for tf in config.bars.timeframes)})"
        )
    return chosen


def _finals(
    store: FinalStore, symbol: str, tf: Timeframe, from_ms: int, to_ms: int
) -> list[OhlcvEvent]:
    return [bar.event() for bar in store.bars(symbol, tf, from_ms, to_ms + 1)]


def make_smc(parts: Parts, url: str) -> tuple[SmcLive, SurfaceClient] | None:
    """The consumer and its own Redis client (to close at shutdown), or None when disabled."""
    config = parts.config
    if not config.smc.enabled:
        return None
    timeframes = smc_timeframes(parts)
    redis = connect_surface(url, parts.secrets, cluster=config.surface.cluster)

    async def source(symbol: str, tf: Timeframe, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
        return await asyncio.to_thread(partial(_finals, parts.store, symbol, tf, from_ms, to_ms))

    live = SmcLive(
        redis,
        parts.keys,
        [(symbol, tf) for symbol in config.broker.symbols for tf in timeframes],
        config.smc.engine,
        clock=parts.clock,
        retention_ms=config.surface.events_retention_s * 1000,
        snapshot_hints=config.smc.snapshot_hints,
        book_bars=config.surface.snapshot_bars,
        source=source,
        grids={symbol: parts.calendars[symbol].day_grid for symbol in config.broker.symbols},
    )
    register_smc_metrics(live.stats, parts.metrics.registry)
    return live, redis
