"""The live loops around a pipeline: close detection and previews run as separate tasks.

Rules (issue 11 point 4): a history call in flight (seconds, on a slow broker) must not stop
previews or the tick cache. `advance_loop` owns time for the fast path and derivation and may
wait on the broker; `preview_loop` only closes ended preview buckets and pumps the coalesced
previews, so it never awaits anything but its own period. Tick intake is a third task (the
broker's tick stream), and none of the three waits on another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fxconnector.runtime.ingest.polling.pipeline import Pipeline


async def advance_loop(
    pipeline: Pipeline,
    now_ms: Callable[[], int],
    period_s: float,
    stop: asyncio.Event,
    after: Callable[[], None] | None = None,
) -> None:
    """Advance the pipeline (fast path, derive, publish finals) every `period_s` until `stop`."""
    while not stop.is_set():
        await pipeline.advance(now_ms())
        if after is not None:
            after()
        await asyncio.sleep(period_s)


async def preview_loop(
    pipeline: Pipeline,
    now_ms: Callable[[], int],
    period_s: float,
    stop: asyncio.Event,
    pump: Callable[[], None],
) -> None:
    """Close ended preview buckets and call `pump` (publish previews, ticks) every `period_s`."""
    while not stop.is_set():
        pipeline.close_previews(now_ms())
        pump()
        await asyncio.sleep(period_s)
