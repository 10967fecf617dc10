"""The live loops around a pipeline: close detection and previews run as separate tasks.

Rules (issue 11 point 4): a history call in flight (seconds, on a slow broker) must not stop
previews or the tick cache. `advance_loop` owns time for the fast path and derivation and may
wait on the broker; `preview_loop` only closes ended preview buckets and pumps the coalesced
previews, so it never awaits anything but its own period. Tick intake is a third task (the
broker's tick stream), and none of the three waits on another.
Close detection is driven by the minute boundary (issue 12): after each advance the loop sleeps
on the injected clock until the pipeline's next due time (the next minute boundary plus the
safety delay, an earlier retry, or at once while a catch-up has more), never polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fxconnector.runtime.clock import Clock
from fxconnector.runtime.ingest.polling.pipeline import Pipeline


async def advance_loop(
    pipeline: Pipeline,
    clock: Clock,
    stop: asyncio.Event,
    after: Callable[[], None] | None = None,
) -> None:
    """Advance the pipeline (fast path, derive, publish finals) whenever it has work next,
    until `stop`."""
    while not stop.is_set():
        await pipeline.advance(clock.now_ms())
        if after is not None:
            after()
        due = pipeline.next_due_ms(clock.now_ms())
        if due > clock.now_ms():
            await _sleep_until(clock, due, stop)
        else:
            await asyncio.sleep(0)  # more to do at once: the other tasks get a turn first


async def _sleep_until(clock: Clock, due_ms: int, stop: asyncio.Event) -> None:
    """Sleep on `clock` until `due_ms`, or less when `stop` is set."""
    sleeper = asyncio.ensure_future(clock.sleep_until(due_ms))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        stopper.cancel()


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
