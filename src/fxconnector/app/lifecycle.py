"""Start, run and stop one connector process (DESIGN §12: crash-only, graceful on signals).

Order of start: open the store (the same recovery path as after a crash), rebuild the tail
cache, connect Redis (starting the embedded server when no URL is configured), rebuild the
surface from the SSOT, connect the broker, catch the pipeline up from the newest stored final
(through the broker's history), then serve HTTP.
Order of stop (SIGINT/SIGTERM): stop intake, flush and fsync the store, drain the surface,
stop HTTP, close Redis, stop the embedded server, release the store lock; bounded to 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import uvicorn

from fxconnector.app import logs
from fxconnector.app.composition import Parts
from fxconnector.core.builders.derive import prepend_finals
from fxconnector.core.coverage import CoverageCounts, classify, count
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.status import BrokerState, SsotState, SurfaceState
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import HOUR_MS, MINUTE_MS, Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.ingest.commands.control import SOCKET_NAME, ControlServer
from fxconnector.runtime.ingest.commands.runner import CommandRunner
from fxconnector.runtime.ingest.polling.live import advance_loop, preview_loop
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.publish.embedded import EmbeddedRedis
from fxconnector.runtime.publish.http_api import ApiDeps, create_app
from fxconnector.runtime.publish.redis_connect import connect_redis
from fxconnector.runtime.publish.redis_surface import RedisSurface
from fxconnector.runtime.publish.surface_reader import SurfaceReader
from fxconnector.runtime.status.builder import Facts, encode_bounded
from fxconnector.runtime.status.health import readiness
from fxconnector.runtime.store.cache_tail import first_finals, last_finals
from fxconnector.runtime.store.lock import WriterLock

log = logging.getLogger("fxconnector.lifecycle")
STATUS_PERIOD_S = 1.0
COVERAGE_PERIOD_S = 10.0
SHUTDOWN_BUDGET_S = 10.0
UI_DIR = Path(__file__).resolve().parents[1] / "ui" / "web"


@dataclass(slots=True)
class _Live:
    """Mutable facts the loops share (one process, one event loop)."""

    ssot_state: SsotState = SsotState.LOADING
    broker_state: BrokerState = BrokerState.CONNECTING
    reconnects: int = 0
    status_json: bytes = b"{}"
    coverage: dict[str, CoverageCounts] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    last_ticks: dict[str, Tick] = field(default_factory=dict)
    runner: CommandRunner | None = None
    head_cache: dict[tuple[str, Timeframe, int], list[OhlcvEvent]] = field(default_factory=dict)

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
    parts: Parts, *, host: str, port: int, stop: asyncio.Event, announce: Callable[[str], None]
) -> int:
    """Run until `stop` is set; return the exit code."""
    config = parts.config
    # One connector per workdir (its embedded Redis, control socket and store live there).
    workdir_lock = WriterLock(parts.workdir)
    workdir_lock.acquire()
    report = parts.store.open()
    for torn in report.torn_tails:
        logs.emit(log, logging.WARNING, "ssot.torn_tail_truncated", detail=torn)
    live = _Live()
    embedded: EmbeddedRedis | None = None
    try:
        parts.tail.rebuild(parts.store)
        url = config.surface.redis_url
        if not url:
            embedded = EmbeddedRedis(parts.workdir / "redis", take_over=True)
            embedded.start()
            url = embedded.url
        redis = connect_redis(url, parts.secrets)
        surface = RedisSurface(
            redis,
            parts.keys,
            parts.tail,
            events_maxlen=config.surface.events_maxlen,
            snapshot_bars=config.surface.snapshot_bars,
            preview_interval_ms=config.surface.preview_interval_ms,
            clock=parts.clock,
            on_published=lambda _event, seconds: parts.metrics.publish_latency.observe(seconds),
            on_redis_error=parts.metrics.redis_errors.inc,
        )
        pipeline = parts.make_pipeline(surface, _start_points(parts))
        runner = CommandRunner(
            parts.command_context(surface),
            parts.clock,
            lambda cmd, s: parts.metrics.command_duration.labels(cmd).observe(s),
        )
        live.runner = runner
        control = ControlServer(parts.workdir / SOCKET_NAME, runner)
        app = create_app(
            _api_deps(parts, pipeline, surface, live, SurfaceReader(redis, parts.keys))
        )
        server = _QuietServer(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
        )
        # The broker first: the catch-up asks its history, which a bridge-backed broker (fxcm)
        # can answer only once connected.
        await parts.broker.connect()
        # Catch up from the newest stored final before anything else runs: it is CPU-bound and
        # would otherwise starve the Redis connection and HTTP of the event loop.
        await pipeline.advance(parts.clock.now_ms())
        await control.start()
        tasks = [
            asyncio.create_task(surface.run(), name="surface"),
            asyncio.create_task(_clock_loop(parts, pipeline, surface, live, stop), name="clock"),
            asyncio.create_task(_ingest(parts, pipeline, live), name="ingest"),
            asyncio.create_task(_sessions(parts, pipeline, live), name="sessions"),
            asyncio.create_task(_status_loop(parts, pipeline, surface, live, stop), name="status"),
            asyncio.create_task(server.serve(), name="http"),
        ]
        announce(
            f"fxconnector {config.broker.kind} {','.join(config.broker.symbols)} "
            f"calendar={config.calendar.profile}: open http://{host}:{port}/"
        )
        logs.emit(
            log,
            logging.INFO,
            "connector.started",
            http=f"{host}:{port}",
            broker=config.broker.kind,
            redis="embedded" if embedded else "external",
        )
        await _until_stopped(stop, tasks)
        await control.close()
        await _shutdown(parts, pipeline, surface, server, tasks)
        await redis.aclose()
    finally:
        if embedded is not None:
            embedded.stop()
        parts.store.close()
        workdir_lock.release()
        logs.emit(log, logging.INFO, "connector.stopped")
    return 0


async def _until_stopped(stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    """Wait for a stop request; a task that dies on a bug stops the process loudly."""
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not stopper and task.exception() is not None:
            logs.emit(
                log,
                logging.ERROR,
                "connector.task_failed",
                task=task.get_name(),
                error=repr(task.exception()),
            )
            stop.set()
    stopper.cancel()


async def _shutdown(
    parts: Parts,
    pipeline: Pipeline,
    surface: RedisSurface,
    server: uvicorn.Server,
    tasks: list[asyncio.Task[None]],
) -> None:
    by_name = {task.get_name(): task for task in tasks}
    await parts.broker.close()
    for name in ("ingest", "sessions", "clock", "status"):
        by_name[name].cancel()
    pipeline.flush()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(surface.drain(), timeout=SHUTDOWN_BUDGET_S / 3)
    await surface.stop()
    server.should_exit = True
    await asyncio.wait(tasks, timeout=SHUTDOWN_BUDGET_S / 3)
    for task in tasks:
        task.cancel()


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
        if event.state is BrokerState.CONNECTED and live.broker_state in (
            BrokerState.DISCONNECTED,
            BrokerState.STALE,
        ):
            live.reconnects += 1
        if event.state is BrokerState.CONNECTED and down_since is not None:
            # The minute before the fault and the one after are doubtful too.
            pipeline.note_outage(down_since - MINUTE_MS, parts.clock.now_ms() + MINUTE_MS)
            down_since = None
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
        advance_loop(pipeline, now, period_s, stop, ssot_state),
        preview_loop(pipeline, now, period_s, stop, pump),
    )


async def _status_loop(
    parts: Parts, pipeline: Pipeline, surface: RedisSurface, live: _Live, stop: asyncio.Event
) -> None:
    last_coverage = -COVERAGE_PERIOD_S
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        now = parts.clock.now_ms()
        if loop.time() - last_coverage >= COVERAGE_PERIOD_S:
            live.coverage = await _coverage(parts, now)
            last_coverage = loop.time()
        live.status_json = encode_bounded(
            parts.status_builder.build(_facts(parts, pipeline, surface, live, now))
        )
        await surface.write_status(live.status_json, ttl_s=int(STATUS_PERIOD_S * 5))
        errors = list(pipeline.stats.errors)[-20:]
        last = live.runner.last if live.runner is not None else None
        await surface.write_status_snapshot(encode({"last_command": last, "errors": errors}))
        await asyncio.sleep(STATUS_PERIOD_S)


def _facts(parts: Parts, pipeline: Pipeline, surface: RedisSurface, live: _Live, now: int) -> Facts:
    stats = pipeline.stats
    last_final: dict[str, dict[str, int | None]] = {}
    for symbol in parts.config.broker.symbols:
        last_final[symbol] = {}
        for tf in parts.config.bars.timeframes:
            opened = parts.store.last_open_ms(symbol, tf)
            last_final[symbol][tf.value] = None if opened is None else opened + tf.ms - 1
    ticks = [pipeline.builder.last_tick_ms(s) for s in parts.config.broker.symbols]
    known = [t for t in ticks if t is not None]
    degraded = []
    if surface.state is not SurfaceState.OK:
        degraded.append(f"surface_{surface.state.value}")
    if live.broker_state is not BrokerState.CONNECTED:
        degraded.append(f"broker_{live.broker_state.value}")
    if any(c.missing for c in live.coverage.values()):
        degraded.append("ssot_missing_minutes")
    if parts.budget is not None and parts.budget.deferred_reason:
        degraded.append("history_budget_deferred")
    return Facts(
        now_ms=now,
        broker_kind=parts.config.broker.kind,
        broker_state=live.broker_state,
        last_tick_ts_ms=max(known) if known else None,
        reconnects=live.reconnects,
        surface_state=surface.state,
        backlog=surface.backlog,
        ssot_state=live.ssot_state,
        last_final_ms=last_final,
        coverage=live.coverage,
        late_ticks=pipeline.late_ticks,
        rejected=dict(stats.rejected),
        last_command=live.runner.last if live.runner is not None else None,
        errors=list(stats.errors),
        degraded=degraded,
    )


def _preview(
    parts: Parts, pipeline: Pipeline, live: _Live, symbol: str, tf: Timeframe
) -> OhlcvEvent | None:
    preview = pipeline.builder.preview(symbol, tf)
    return None if preview is None else live.complete(parts, pipeline, preview)


async def _coverage(parts: Parts, now: int) -> dict[str, CoverageCounts]:
    """Minute classes of the last 24 hours that have had time to be fetched (a symbol at a
    time, the event loop getting a turn between symbols)."""
    end = now - parts.config.broker.history_safety_delay_ms - 2 * MINUTE_MS
    end -= end % MINUTE_MS
    start = end - 24 * HOUR_MS
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

    return ApiDeps(
        reader=reader,
        symbols=parts.config.broker.symbols,
        timeframes=parts.config.bars.timeframes,
        history=history,
        preview=lambda symbol, tf: _preview(parts, pipeline, live, symbol, tf),
        status=lambda: encode_bounded(
            parts.status_builder.build(_facts(parts, pipeline, surface, live, parts.clock.now_ms()))
        ),
        ready=lambda: readiness(live.ssot_state, surface.state),
        metrics_registry=parts.metrics.registry,
        ui_dir=UI_DIR if (UI_DIR / "index.html").is_file() else None,
    )
