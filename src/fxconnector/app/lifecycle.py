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
from collections import deque
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import uvicorn

from fxconnector.app import logs
from fxconnector.app.composition import Parts
from fxconnector.app.progress import MinuteSummary, ProgressReport, ProgressTask
from fxconnector.app.smc_run import make_smc, smc_timeframes
from fxconnector.app.stopping import HTTP_GRACE_S, serve_http, shutdown, step, until_stopped
from fxconnector.core.builders.derive import prepend_finals
from fxconnector.core.coverage import CoverageCounts, classify, count
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.status import (
    BrokerState,
    CommandState,
    ErrorEntry,
    RepairState,
    SsotState,
    SurfaceState,
)
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import DAY_MS, HOUR_MS, MINUTE_MS, Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.ingest.commands.auto_repair import RepairScheduler
from fxconnector.runtime.ingest.commands.control import SOCKET_NAME, ControlServer
from fxconnector.runtime.ingest.commands.runner import CommandRunner
from fxconnector.runtime.ingest.polling.live import advance_loop, preview_loop
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.publish.embedded import EmbeddedRedis
from fxconnector.runtime.publish.event_check import Rejects
from fxconnector.runtime.publish.host_guard import HostPolicy
from fxconnector.runtime.publish.http_api import ApiDeps, create_app
from fxconnector.runtime.publish.leases import SymbolLeases, take_leases
from fxconnector.runtime.publish.redis_connect import SurfaceClient, connect_surface
from fxconnector.runtime.publish.redis_surface import RedisSurface
from fxconnector.runtime.publish.served_symbols import ServedSymbols
from fxconnector.runtime.publish.status_writer import StatusPayloads
from fxconnector.runtime.publish.surface_reader import SurfaceReader
from fxconnector.runtime.status.builder import Facts, SymbolFacts, encode_bounded
from fxconnector.runtime.status.health import readiness
from fxconnector.runtime.store.cache_tail import first_finals, last_finals
from fxconnector.runtime.store.lock import WriterLock

log = logging.getLogger("fxconnector.lifecycle")
STATUS_PERIOD_S = 1.0
COVERAGE_PERIOD_S = 10.0
UI_DIR = Path(__file__).resolve().parents[1] / "ui" / "web"
#: Redis connections of the push fan-out (one blocking reader; one spare for the next read).
PUSH_REDIS_CONNECTIONS = 2
#: Redis connections of the HTTP requests (/api/bars checks, push catch-ups); busy: 503.
API_REDIS_CONNECTIONS = 16


@dataclass(slots=True)
class _Live:
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
    head_cache: dict[tuple[str, Timeframe, int], list[OhlcvEvent]] = field(default_factory=dict)
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
        key = (preview.symbol, preview.tf, preview.open_ms)
        head = self.head_cache.get(key)
        if head is None:
            head = [
                b.event()
                for b in parts.store.bars(preview.symbol, Timeframe.M1, preview.open_ms, first)
            ]
            if head and head[-1].open_ms == first - MINUTE_MS:
                # Complete up to the first live minute: it will not change (but by revision).
                self.head_cache = {k: v for k, v in self.head_cache.items() if k[2] >= key[2]}
                self.head_cache[key] = head
        return prepend_finals(preview, head)


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
    live = _Live(corrupt_lines=report.corrupt_lines)
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
            preview_interval_ms=config.surface.preview_interval_ms,
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
        deps = _api_deps(parts, pipeline, surface, live, api_reader)
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
            asyncio.create_task(_clock_loop(parts, pipeline, surface, live, stop), name="clock"),
            asyncio.create_task(_ingest(parts, pipeline, live), name="ingest"),
            asyncio.create_task(_sessions(parts, pipeline, live), name="sessions"),
            asyncio.create_task(_status_loop(parts, pipeline, surface, live, stop), name="status"),
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


async def _ingest(parts: Parts, pipeline: Pipeline, live: _Live) -> None:
    on_tick = pipeline.on_tick
    now = parts.clock.now_ms
    async for tick in parts.broker.ticks():
        if on_tick(tick, now()):
            live.dirty.add(tick.symbol)
            live.last_ticks[tick.symbol] = tick


async def _sessions(parts: Parts, pipeline: Pipeline, live: _Live) -> None:
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


async def _clock_loop(
    parts: Parts, pipeline: Pipeline, surface: RedisSurface, live: _Live, stop: asyncio.Event
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


async def _status_loop(
    parts: Parts, pipeline: Pipeline, surface: RedisSurface, live: _Live, stop: asyncio.Event
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
        await _write_status(parts, pipeline, surface, live, now)
        errors = _errors(pipeline, surface, live)[-20:]
        last = live.runner.last if live.runner is not None else None
        await surface.write_status_snapshot(encode({"last_command": last, "errors": errors}))
        await asyncio.sleep(STATUS_PERIOD_S)


async def _write_status(
    parts: Parts, pipeline: Pipeline, surface: RedisSurface, live: _Live, now: int
) -> bool:
    """Build the summary and every symbol's detail, keep the details for `/api/status?symbol=`
    and write them all to Redis (False: Redis unavailable, counted by the surface)."""
    facts = _facts(parts, pipeline, surface, live, now)
    builder = parts.status_builder
    live.status_symbols = {s.symbol: encode(builder.build_symbol(now, s)) for s in facts.symbols}
    payloads = StatusPayloads(
        process_id=builder.process_id,
        summary=encode_bounded(builder.build(facts)),
        symbols=live.status_symbols,
    )
    return await surface.write_status(payloads, ttl_s=int(STATUS_PERIOD_S * 5))


def _show_command(live: _Live) -> None:
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
    parts: Parts, pipeline: Pipeline, live: _Live, summary: MinuteSummary, now: int
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


def _report_corrupt_lines(parts: Parts, lines: list[str]) -> None:
    """Lines the store skipped at open: logged one by one, counted; status says it (`_facts`)."""
    for line in lines:
        logs.emit(log, logging.ERROR, "ssot.corrupt_line_skipped", detail=line)
    parts.metrics.ssot_corrupt_lines.inc(len(lines))


def _symbol_facts(
    parts: Parts, pipeline: Pipeline, live: _Live, symbol: str, now: int, stalled: Collection[str]
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


def _facts(parts: Parts, pipeline: Pipeline, surface: RedisSurface, live: _Live, now: int) -> Facts:
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
        errors=_errors(pipeline, surface, live),
        degraded=degraded,
        repair=repair,
        symbols=symbols,
        final_lag_bound_s=parts.plan.bound_ms / 1000,
    )


def _status_symbol(parts: Parts, pipeline: Pipeline, live: _Live, symbol: str) -> bytes:
    """`/api/status?symbol=`: the detail the status loop wrote last (at most a period old),
    built now before its first pass."""
    written = live.status_symbols.get(symbol)
    if written is not None:
        return written
    now = parts.clock.now_ms()
    facts = _symbol_facts(parts, pipeline, live, symbol, now, pipeline.stalled(now))
    return encode(parts.status_builder.build_symbol(now, facts))


def _errors(pipeline: Pipeline, surface: RedisSurface, live: _Live) -> list[ErrorEntry]:
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


def _preview(
    parts: Parts, pipeline: Pipeline, live: _Live, symbol: str, tf: Timeframe
) -> OhlcvEvent | None:
    preview = pipeline.builder.preview(symbol, tf)
    return None if preview is None else live.complete(parts, pipeline, preview)


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


def _api_deps(
    parts: Parts, pipeline: Pipeline, surface: RedisSurface, live: _Live, reader: SurfaceReader
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
            parts.status_builder.build(_facts(parts, pipeline, surface, live, parts.clock.now_ms()))
        ),
        status_symbol=lambda symbol: _status_symbol(parts, pipeline, live, symbol),
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
