"""The composition root: config in, one wired connector out (DESIGN §2).

Rules: the only place that chooses implementations (broker, store, Redis, HTTP) and passes
dependencies in; no module-level state anywhere else. Building is cheap and does no I/O beyond
loading the calendar and reading the store's manifest (a config that disagrees with the store is
refused here, before anything starts); `lifecycle.run` opens, starts and stops things in order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fxconnector import __version__
from fxconnector.config.calendars import load_calendar
from fxconnector.config.schema import Config
from fxconnector.config.secrets import Secrets
from fxconnector.core.builders.spec import BarSpec, OpenMode, PriceSide, VolumeMode
from fxconnector.core.calendar import CalendarProfile, TradingCalendar
from fxconnector.core.errors import ConfigError
from fxconnector.core.history_plan import HistoryPlan, plan_history
from fxconnector.core.validation.ticks import TickRails
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.governance.metrics import Metrics, PipelineCounts
from fxconnector.runtime.governance.rails import BudgetConfig, HistoryBudget
from fxconnector.runtime.ingest.broker.fxcm.adapter import FxcmBroker
from fxconnector.runtime.ingest.broker.oanda.client import OandaBroker
from fxconnector.runtime.ingest.broker.port import BrokerPort
from fxconnector.runtime.ingest.broker.sim.broker import SimBroker
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator
from fxconnector.runtime.ingest.commands.handlers import CommandContext, RepairCaps
from fxconnector.runtime.ingest.polling.pipeline import Pipeline, Settle
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.sink import EventSink
from fxconnector.runtime.publish.status_writer import this_process_id
from fxconnector.runtime.status.builder import StatusBuilder
from fxconnector.runtime.store import manifest
from fxconnector.runtime.store.cache_tail import TailCache
from fxconnector.runtime.store.factory import open_store, preflight
from fxconnector.runtime.store.port import FinalStore

#: The tail cache keeps more than the Redis snapshot so /api/bars can serve deep limits fast.
TAIL_WINDOW = 5_000


@dataclass(slots=True)
class Parts:
    """Everything `lifecycle.run` starts and stops, built from one config."""

    config: Config
    secrets: Secrets
    workdir: Path
    clock: Clock
    calendar_profile: CalendarProfile
    calendars: dict[str, TradingCalendar]
    spec: BarSpec
    rails: TickRails
    store: FinalStore
    tail: TailCache
    broker: BrokerPort
    keys: SurfaceKeys
    status_builder: StatusBuilder
    started_ms: int
    plan: HistoryPlan
    pipeline: Pipeline | None = None
    budget: HistoryBudget | None = None
    surface_backlog: int = 0
    metrics: Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = Metrics(self.counts)

    def make_pipeline(
        self, sink: EventSink, start_ms: Mapping[str, int], settle: Settle | None = None
    ) -> Pipeline:
        """The pipeline, once the sink (the Redis surface) exists; `settle` is the surface's
        (its 1m finals reach Redis before derivation takes the event loop)."""
        broker = self.config.broker
        self.budget = HistoryBudget(
            self.clock,
            BudgetConfig(
                requests_per_min=broker.history_requests_per_min,
                burst=broker.history_requests_per_min,
                max_chunk_minutes=broker.history_chunk_minutes,
                # A minute's turn of the plan finds its tokens: heavy work never takes them.
                fast_reserve=min(
                    max(self.plan.group_size, BudgetConfig().fast_reserve),
                    broker.history_requests_per_min - 1,
                ),
            ),
        )
        self.pipeline = Pipeline(
            history=self.broker.history_1m,
            store=self.store,
            calendars=self.calendars,
            timeframes=self.config.bars.timeframes,
            spec=self.spec,
            rails=self.rails,
            sink=sink,
            start_ms=start_ms,
            safety_delay_ms=broker.history_safety_delay_ms,
            max_chunk_minutes=broker.history_chunk_minutes,
            budget=self.budget,
            stall_after_ms=broker.finals_stall_s * 1000,
            plan=self.plan,
            settle=settle,
        )
        return self.pipeline

    def command_context(self, sink: EventSink) -> CommandContext:
        """What commands run against (after make_pipeline)."""
        assert self.pipeline is not None
        return CommandContext(
            self.pipeline,
            self.store,
            sink,
            self.calendars,
            self.config.bars.timeframes,
            RepairCaps(repair_window_hours=self.config.repair.window_hours),
        )

    def counts(self) -> PipelineCounts:
        """Counters for the metrics collector (read at scrape time)."""
        pipeline = self.pipeline
        if pipeline is None:
            return PipelineCounts()
        stats = pipeline.stats
        now_ms = self.clock.now_ms()
        stalled = pipeline.stalled(now_ms)
        return PipelineCounts(
            ticks_by_symbol=pipeline.ticks_by_symbol(),
            rejected_by_reason=dict(stats.rejected),
            late_ticks=pipeline.late_ticks,
            finals_by_tf=dict(stats.finals),
            revisions_by_tf=dict(stats.revisions),
            history_requests=stats.history_requests,
            history_failures=stats.history_failures,
            surface_backlog=self.surface_backlog,
            candles_refused_by_reason=dict(stats.candles_refused),
            final_lag_s_by_symbol={
                s: pipeline.final_lag_ms(s, now_ms) / 1000 for s in self.config.broker.symbols
            },
            finals_stalled_by_symbol={s: int(s in stalled) for s in self.config.broker.symbols},
        )


def resolve(workdir: Path, path: str) -> Path:
    """`path` from the config, relative to the workdir unless absolute."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else workdir / candidate


def build(config: Config, secrets: Secrets, clock: Clock) -> Parts:
    """Wire the parts of one connector process (nothing is opened yet)."""
    workdir = Path(config.workdir)
    plan = history_plan(config)  # a config that cannot meet its own bound stops here
    now_ms = clock.now_ms()
    overrides = Path(config.calendar.overrides_path) if config.calendar.overrides_path else None
    profile = load_calendar(config.calendar.profile, now_ms=now_ms, path=overrides)
    symbols = config.broker.symbols
    calendars = {symbol: profile.for_symbol(symbol) for symbol in symbols}
    spec = BarSpec(
        PriceSide(config.bars.price),
        OpenMode(config.bars.open_mode),
        VolumeMode(config.bars.volume),
    )
    rails = TickRails(
        symbols=frozenset(symbols),
        max_spread_inversion=config.ticks.max_spread_inversion,
        max_future_ms=config.ticks.max_future_ms,
        epoch_rail_ms=config.ticks.epoch_rail_ms,
        min_price=config.ticks.min_price,
        max_price=config.ticks.max_price,
        max_volume=config.ticks.max_volume,
    )
    store_path = resolve(workdir, config.store.path)
    identity = manifest.StoreIdentity(
        manifest.wanted(
            store_kind=config.store.kind,
            calendar=config.calendar.profile,
            profile=profile,
            calendar_file=overrides,
            timeframes=config.bars.timeframes,
            price=config.bars.price,
            open_mode=config.bars.open_mode,
            volume=config.bars.volume,
            symbols=symbols,
            origin="run",
        ),
        profile,
    )
    preflight(store_path, identity.manifest)
    store = open_store(
        config.store.kind, store_path, config.store.fsync_interval_ms, identity=identity
    )
    return Parts(
        config=config,
        secrets=secrets,
        workdir=workdir,
        clock=clock,
        calendar_profile=profile,
        calendars=calendars,
        spec=spec,
        rails=rails,
        store=store,
        tail=TailCache(max(TAIL_WINDOW, config.surface.snapshot_bars)),
        broker=_broker(config, secrets, clock, spec, calendars),
        keys=SurfaceKeys(config.surface.namespace, config.surface.cluster),
        status_builder=StatusBuilder(
            version=__version__,
            process_id=this_process_id(os.getpid()),
            pid=os.getpid(),
            started_ms=now_ms,
            calendar=profile.default,
        ),
        started_ms=now_ms,
        plan=plan,
    )


def history_plan(config: Config) -> HistoryPlan:
    """The fast path's plan for this config; ConfigError with the numbers when its worst-case
    final lag exceeds `broker.max_final_lag_s` (or the budget leaves the fast path nothing)."""
    broker = config.broker
    symbols, budget = len(broker.symbols), broker.history_requests_per_min
    try:
        plan = plan_history(
            symbols,
            budget,
            reserved_per_min=broker.history_reserved_per_min,
            safety_delay_ms=broker.history_safety_delay_ms,
            call_allowance_ms=broker.history_call_allowance_ms,
        )
    except ValueError as exc:
        raise ConfigError(
            f"history plan: {exc} (N = {symbols} symbols, B = {budget} requests/min); "
            "fix [broker] history_requests_per_min, history_reserved_per_min or "
            "history_call_allowance_ms"
        ) from None
    if plan.bound_ms > broker.max_final_lag_s * 1000:
        raise ConfigError(
            f"history plan: N = {symbols} symbols on B = {budget} history requests/min "
            f"({broker.history_reserved_per_min} reserved) give a worst-case final lag of "
            f"{plan.bound_ms / 1000:g} s (each symbol asked every {plan.every_minutes} min), "
            f"over the limit [broker] max_final_lag_s = {broker.max_final_lag_s} s; fewer "
            "symbols per process, a larger history_requests_per_min or a larger "
            "max_final_lag_s"
        )
    return plan


def _broker(
    config: Config,
    secrets: Secrets,
    clock: Clock,
    spec: BarSpec,
    calendars: dict[str, TradingCalendar],
) -> BrokerPort:
    kind = config.broker.kind
    if kind == "sim":
        sim = config.broker.sim
        generator = TickGenerator(
            sim.seed,
            calendars,
            sim.ticks_per_minute,
            ticks_per_minute_max=sim.ticks_per_minute_max,
            hourly=sim.hourly,
        )
        return SimBroker(generator, config.broker.symbols, clock, spec, calendars)
    if kind == "fxcm":
        return FxcmBroker(
            config.broker.fxcm,
            secrets,
            config.broker.symbols,
            calendars,
            clock,
            spec=spec,
            workdir=Path(config.workdir) / "fxcm",
            watchdog_silence_s=config.broker.fxcm.watchdog_silence_s,
        )
    if kind == "oanda":
        return OandaBroker(
            config.broker.oanda,
            secrets.oanda_token,
            config.broker.symbols,
            calendars,
            clock,
            watchdog_silence_s=config.broker.oanda.watchdog_silence_s,
        )
    raise ConfigError(
        f"broker.kind = {kind!r} cannot run live: use sim, fxcm or oanda "
        "(recorded ticks: `fxconnector replay`)"
    )


def wall_ms() -> int:
    """Wall-clock epoch ms (for log lines and the start time)."""
    return time.time_ns() // 1_000_000
