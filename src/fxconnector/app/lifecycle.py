"""Start, run and stop one connector process (DESIGN §12: crash-only, graceful on signals).

Order of start: open the store (the same recovery path as after a crash), rebuild the tail
cache, connect Redis (starting the embedded server when no URL is configured; a Redis Cluster
with `surface.cluster`; the publisher, the push fan-out and the HTTP requests each get a Redis
client of their own), take the leases of the configured symbols (an external Redis only: a
symbol another process holds is refused, exit 2), rebuild the surface from the SSOT, mark the
derived buckets the store says are still to derive (crash-only: that set is never only in
memory), connect the broker, catch the pipeline up from the newest stored final (through the
broker's history), then serve HTTP and start the scheduled repair.
Order of stop (SIGINT/SIGTERM): stop accepting HTTP connections, end the push streams cleanly
(SSE end, WebSocket close 1001) while Redis is still up, stop HTTP, then the publishers (broker
intake, loops), flush and fsync the store, drain the surface, release the leases, close Redis,
stop the embedded server, release the store lock. Nothing waits on a client's timeout.
Exit: 0 after a stop request; a task that fails or ends on its own stops the process the same
way, then its error is raised (`fxconnector run` turns it into one line and exit code 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import replace

import uvicorn

from fxconnector.app import logs
from fxconnector.app.api_wiring import api_deps
from fxconnector.app.composition import Parts
from fxconnector.app.live_loops import LiveState, clock_loop, ingest, sessions
from fxconnector.app.live_status import status_loop
from fxconnector.app.progress import ProgressReport
from fxconnector.app.smc_run import make_smc, smc_timeframes
from fxconnector.app.stopping import HTTP_GRACE_S, serve_http, shutdown, step, until_stopped
from fxconnector.core.model.status import ErrorEntry
from fxconnector.core.time_geom import DAY_MS, HOUR_MS, MINUTE_MS, Timeframe
from fxconnector.runtime.ingest.commands.auto_repair import RepairScheduler
from fxconnector.runtime.ingest.commands.control import SOCKET_NAME, ControlServer
from fxconnector.runtime.ingest.commands.runner import CommandRunner
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.publish.embedded import EmbeddedRedis
from fxconnector.runtime.publish.event_check import Rejects
from fxconnector.runtime.publish.http_api import create_app
from fxconnector.runtime.publish.leases import SymbolLeases, take_leases
from fxconnector.runtime.publish.redis_connect import SurfaceClient, connect_surface
from fxconnector.runtime.publish.redis_surface import RedisSurface
from fxconnector.runtime.publish.served_symbols import ServedSymbols
from fxconnector.runtime.publish.surface_reader import SurfaceReader
from fxconnector.runtime.store.lock import WriterLock

log = logging.getLogger("fxconnector.lifecycle")
#: Redis connections of the push fan-out (one blocking reader; one spare for the next read).
PUSH_REDIS_CONNECTIONS = 2
#: Redis connections of the HTTP requests (/api/bars checks, push catch-ups); busy: 503.
API_REDIS_CONNECTIONS = 16


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the lifecycle owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run(
    parts: Parts,
    *,
    listener: socket.socket,
    stop: asyncio.Event,
    announce: Callable[[str], None],
) -> int:
    """Run until `stop` is set and return 0; a failure after start is raised once stopped.

    `listener` is the HTTP socket, bound (not listening) by the caller so that a taken port or
    an unknown host fails before anything starts.
    """
    config = parts.config
    # One connector per workdir (its embedded Redis, control socket and store live there).
    workdir_lock = WriterLock(parts.workdir)
    workdir_lock.acquire()
    report = parts.store.open()
    for torn in report.torn_tails:
        logs.emit(log, logging.WARNING, "ssot.torn_tail_truncated", detail=torn)
    _report_corrupt_lines(parts, report.corrupt_lines)
    live = LiveState(corrupt_lines=report.corrupt_lines)
    embedded: EmbeddedRedis | None = None
    redis: SurfaceClient | None = None
    leases: SymbolLeases | None = None
    readers: list[SurfaceClient] = []
    control: ControlServer | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        parts.tail.rebuild(parts.store)
        url = config.surface.redis_url
        if not url:
            embedded = EmbeddedRedis(parts.workdir / "redis", take_over=True)
            embedded.start()
            url = embedded.url
        cluster = config.surface.cluster
        # The publisher's own client: it never waits on readers.
        redis = connect_surface(url, parts.secrets, cluster=cluster)
        # The push fan-out's one reader and the HTTP requests' bounded pool (503 when busy).
        push_redis = connect_surface(
            url, parts.secrets, cluster=cluster, max_connections=PUSH_REDIS_CONNECTIONS
        )
        api_redis = connect_surface(
            url, parts.secrets, cluster=cluster, max_connections=API_REDIS_CONNECTIONS
        )
        readers = [push_redis, api_redis]
        smc = make_smc(parts, url)  # the live SMC consumer, on its own connection (smc_run)
        if smc is not None:
            readers.append(smc[1])
        # One writer per symbol in a shared namespace: refused (SymbolLeased) when another
        # process holds one. The embedded Redis is this process's alone: no leases there.
        if embedded is None:
            leases = await take_leases(
                redis, parts.keys, parts.workdir, config.broker.symbols, parts.clock
            )
        surface = RedisSurface(
            redis,
            parts.keys,
            parts.tail,
            events_retention_s=config.surface.events_retention_s,
            snapshot_bars=config.surface.snapshot_bars,
            # Previews are paced by the preview pump (live_loops.clock_loop, every
            # `preview_interval_ms`): each pump's previews wake the writer and go out right
            # after it, not on a second timer of the same period (up to one more period late).
            preview_interval_ms=0,
            clock=parts.clock,
            symbols=config.broker.symbols,
            leases=leases,
            on_published=lambda _event, seconds: parts.metrics.publish_latency.observe(seconds),
            on_redis_error=parts.metrics.redis_errors.inc,
        )
        pipeline = parts.make_pipeline(surface, _start_points(parts), surface.settle)
        plan = parts.plan
        logs.emit(
            log,
            logging.INFO,
            "history.plan",
            symbols=plan.symbols,
            requests_per_min=plan.requests_per_min,
            reserved_per_min=plan.reserved_per_min,
            every_minutes=plan.every_minutes,
            per_minute=plan.group_size,
            final_lag_bound_s=plan.bound_ms / 1000,
            max_final_lag_s=config.broker.max_final_lag_s,
            detail=plan.describe(),
        )
        _recover_derived(parts, pipeline)
        pipeline.stats.errors.extend(
            ErrorEntry(ts=parts.started_ms, code="ssot.corrupt_line", message=line[:500])
            for line in report.corrupt_lines[:10]
        )
        runner = CommandRunner(
            parts.command_context(surface),
            parts.clock,
            lambda cmd, s: parts.metrics.command_duration.labels(cmd).observe(s),
        )
        live.runner = runner
        live.repair = RepairScheduler(
            parts.command_context(surface),
            runner,
            parts.clock,
            symbols=config.broker.symbols,
            interval_s=config.repair.interval_s,
            window_hours=config.repair.window_hours,
            on_run=parts.metrics.repair_finished,
        )
        control = ControlServer(parts.workdir / SOCKET_NAME, runner)
        live.read_rejects = Rejects(parts.clock.now_ms)
        api_reader = SurfaceReader(api_redis, parts.keys)
        # An external Redis may be shared by other processes of the namespace: serve every
        # symbol of `NS:symbols` too. The embedded one is this process's alone.
        served = ServedSymbols(
            config.broker.symbols,
            reader=api_reader if embedded is None else None,
            now_ms=parts.clock.now_ms,
            calendars=dict(parts.calendars),
            calendar_for=parts.calendar_profile.for_symbol,
        )
        deps = api_deps(parts, pipeline, surface, live, api_reader)
        deps = replace(
            deps,
            push_reader=SurfaceReader(push_redis, parts.keys),
            served=served,
            calendars=served.calendars,
            smc_timeframes=smc_timeframes(parts) if config.smc.enabled else (),
        )
        server = _QuietServer(
            uvicorn.Config(
                create_app(deps),
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=HTTP_GRACE_S,
            )
        )
        # The broker first: the catch-up asks its history, which a bridge-backed broker (fxcm)
        # can answer only once connected.
        await parts.broker.connect()
        # Catch up from the newest stored final before anything else runs: it is CPU-bound and
        # would otherwise starve the Redis connection and HTTP of the event loop.
        if not await _catch_up(parts, pipeline, stop):
            return 0  # stopped (a signal) during the catch-up
        await control.start()
        tasks = [
            asyncio.create_task(surface.run(), name="surface"),
            asyncio.create_task(clock_loop(parts, pipeline, surface, live, stop), name="clock"),
            asyncio.create_task(ingest(parts, pipeline, live), name="ingest"),
            asyncio.create_task(sessions(parts, pipeline, live), name="sessions"),
            asyncio.create_task(status_loop(parts, pipeline, surface, live, stop), name="status"),
            asyncio.create_task(serve_http(server, listener), name="http"),
        ]
        if live.repair.enabled:
            tasks.append(asyncio.create_task(live.repair.run(), name="repair"))
        if smc is not None:
            tasks.append(asyncio.create_task(smc[0].run(stop), name="smc"))
        announce(
            f"fxconnector {config.broker.kind} {','.join(config.broker.symbols)} "
            f"calendar={config.calendar.profile}: open http://{config.http.bind}/"
        )
        logs.emit(
            log,
            logging.INFO,
            "connector.started",
            http=config.http.bind,
            broker=config.broker.kind,
            redis="embedded" if embedded else "external",
        )
        failure = await until_stopped(stop, tasks)
        await shutdown(parts, pipeline, surface, server, deps.streams, tasks)
        if failure is not None:
            raise failure
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await parts.broker.close()
        if control is not None:
            await control.close()  # removes the socket: no stale control.sock is left behind
        listener.close()
        if leases is not None:
            await leases.release_quietly()
        for reader in readers:
            await reader.aclose()
        if redis is not None:
            await redis.aclose()
        if embedded is not None:
            embedded.stop()
            step("redis_stopped")
        parts.store.close()
        workdir_lock.release()
        logs.emit(log, logging.INFO, "connector.stopped")
    return 0


async def _catch_up(parts: Parts, pipeline: Pipeline, stop: asyncio.Event) -> bool:
    """The startup catch-up, with its progress per symbol (a bar on a terminal, JSON lines
    otherwise); False when `stop` was set first (the catch-up is abandoned)."""
    now = parts.clock.now_ms()
    ready_until = now - parts.config.broker.history_safety_delay_ms
    ready_until -= ready_until % MINUTE_MS
    starts = {s: pipeline.progress_ms(s) for s in parts.config.broker.symbols}
    report = ProgressReport()
    tasks = {
        symbol: report.task(f"catch-up {symbol}", max(0, (ready_until - start) // MINUTE_MS))
        for symbol, start in starts.items()
    }

    def fetched(symbol: str, next_ms: int) -> None:
        total = max(0, (ready_until - starts[symbol]) // MINUTE_MS)
        tasks[symbol].update(min(total, (next_ms - starts[symbol]) // MINUTE_MS), total)

    pipeline.on_fetched = fetched
    started = asyncio.get_running_loop().time()
    catch_up = asyncio.create_task(pipeline.advance(now), name="catch-up")
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([catch_up, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        pipeline.on_fetched = None
        for task in tasks.values():
            task.finish()
    if catch_up.done():
        catch_up.result()  # raises what failed it
        logs.emit(
            log,
            logging.INFO,
            "connector.caught_up",
            minutes={s: max(0, (ready_until - start) // MINUTE_MS) for s, start in starts.items()},
            seconds=round(asyncio.get_running_loop().time() - started, 1),
        )
        return True
    catch_up.cancel()
    await asyncio.gather(catch_up, return_exceptions=True)
    return False


def _recover_derived(parts: Parts, pipeline: Pipeline) -> None:
    """Mark dirty every derived bucket the store says is missing or stale, over the window a
    catch-up or a repair can have written since the newest final (plus a day for 1d buckets);
    the catch-up's `advance` derives them."""
    now = parts.clock.now_ms()
    config = parts.config
    reach_ms = (
        max(config.broker.startup_lookback_mins * MINUTE_MS, config.repair.window_hours * HOUR_MS)
        + DAY_MS
    )
    for symbol in config.broker.symbols:
        last = parts.store.last_open_ms(symbol, Timeframe.M1)
        if last is None:
            continue
        marked = pipeline.derived.recover(
            symbol, last + MINUTE_MS - reach_ms, max(now, last + MINUTE_MS)
        )
        if marked:
            logs.emit(log, logging.WARNING, "derived.recovered", symbol=symbol, buckets=marked)


def _start_points(parts: Parts) -> dict[str, int]:
    """Where close detection starts: after the newest stored final, else a lookback."""
    now = parts.clock.now_ms()
    lookback = parts.config.broker.startup_lookback_mins * MINUTE_MS
    out = {}
    for symbol in parts.config.broker.symbols:
        last = parts.store.last_open_ms(symbol, Timeframe.M1)
        start = now - lookback if last is None else last + MINUTE_MS
        out[symbol] = max(start, now - lookback)
    return out


def _report_corrupt_lines(parts: Parts, lines: list[str]) -> None:
    """Lines the store skipped at open: logged one by one, counted; status says it
    (`live_status.build_facts`)."""
    for line in lines:
        logs.emit(log, logging.ERROR, "ssot.corrupt_line_skipped", detail=line)
    parts.metrics.ssot_corrupt_lines.inc(len(lines))
