"""Stopping a running connector: noticing why, and the order of the stop (DESIGN §12).

Rules: a stop request (a signal) and a task that fails or ends on its own are handled the same
way, in the same order: accept no new HTTP connection, end the push streams cleanly while Redis
is still up (SSE end, WebSocket close 1001), stop HTTP, then the publishers (broker intake and
the loops), flush the store, drain the surface. Nothing waits on a client's timeout. The failure
is returned for `fxconnector run` to report as one line (exit code 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import traceback

import uvicorn

from fxconnector.app import logs
from fxconnector.app.composition import Parts
from fxconnector.core.errors import FxConnectorError
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.publish.http_common import PushStreams
from fxconnector.runtime.publish.redis_surface import RedisSurface

log = logging.getLogger("fxconnector.lifecycle")
SHUTDOWN_BUDGET_S = 10.0
#: How long open push streams get to end (they end at once: nothing waits on a client).
STREAMS_END_S = 1.0
#: uvicorn cancels what still runs this long after it was told to exit.
HTTP_GRACE_S = 1


async def serve_http(server: uvicorn.Server, listener: socket.socket) -> None:
    """Serve HTTP on the bound `listener` until told to exit; a failed start is our error."""
    try:
        await server.serve(sockets=[listener])
    except SystemExit:  # uvicorn exits when it cannot start (and has logged why)
        raise FxConnectorError("the HTTP server could not start (see the log above)") from None


async def until_stopped(
    stop: asyncio.Event, tasks: list[asyncio.Task[None]]
) -> FxConnectorError | None:
    """Wait for a stop request; a task that fails or ends on its own stops the process and is
    returned as the failure to report (one line) once everything has stopped."""
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    failure: FxConnectorError | None = None
    for task in done:
        if task is stopper or failure is not None:
            continue
        error = task.exception()
        if isinstance(error, FxConnectorError):
            failure = error
            logs.emit(
                log, logging.ERROR, "connector.task_failed", task=task.get_name(), error=str(error)
            )
        elif error is not None:  # a bug: its traceback goes to the log, one line to the user
            failure = FxConnectorError(f"{task.get_name()} crashed: {error!r} (a bug)")
            logs.emit(
                log,
                logging.ERROR,
                "connector.task_failed",
                task=task.get_name(),
                error=repr(error),
                traceback="".join(traceback.format_exception(error)),
            )
        elif not stop.is_set():  # the loops end by themselves once a stop is requested
            failure = FxConnectorError(f"{task.get_name()} ended on its own")
            logs.emit(log, logging.ERROR, "connector.task_ended", task=task.get_name())
    return failure


async def shutdown(
    parts: Parts,
    pipeline: Pipeline,
    surface: RedisSurface,
    server: uvicorn.Server,
    streams: PushStreams,
    tasks: list[asyncio.Task[None]],
) -> None:
    """Stop in order: accept nothing new, end the push streams (while Redis is up), stop HTTP,
    then the publishers (broker intake, loops), flush the store, drain the surface."""
    by_name = {task.get_name(): task for task in tasks}
    logs.emit(log, logging.INFO, "connector.stopping", streams=streams.open)
    for listening in getattr(server, "servers", []):
        listening.close()
    streams.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(streams.wait_ended(), timeout=STREAMS_END_S)
    step("streams_ended")
    server.should_exit = True
    await asyncio.wait([by_name["http"]], timeout=HTTP_GRACE_S + 1.0)
    step("http_stopped")
    await parts.broker.close()
    loops = [
        by_name[name]
        for name in ("ingest", "sessions", "clock", "status", "repair")
        if name in by_name
    ]
    for task in loops:
        task.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    step("publishers_stopped")
    # A stop in the middle of an advance leaves buckets marked but not derived: derive them now
    # so a clean stop leaves a complete store (a crash is covered by the start-up recovery);
    # published once durable, like every final.
    derived = pipeline.derived.run(parts.clock.now_ms())
    pipeline.flush()
    surface.finals(derived)
    step("store_flushed")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(surface.drain(), timeout=SHUTDOWN_BUDGET_S / 3)
    await surface.stop()
    step("surface_stopped")


def step(name: str) -> None:
    """A stop step done (debug: `--log-level debug` shows where a slow stop spends its time)."""
    logs.emit(log, logging.DEBUG, "connector.stop_step", step=name)
