"""The composition root of `fxconnector exec`: config -> core, journal, gateway, socket, surface.

Rules:
- Built once from the frozen config; nothing global. The gateway: `paper` (books under the
  journal folder) or `oanda` (`[execution.oanda]`, the token from the secrets). The risk
  limits come from `[execution.traders]` (per trader and symbol; money in the symbol's quote
  currency), the calendars from `[calendar]` (market-closed check, trading day of the daily
  loss).
- Order of start (crash-only: start == recovery): the gateway (the paper books' lock and
  replay), the journal (its writer lock, a torn tail cut), the replay into the core and the
  reconcile of every open order (the engine's start), the control socket (answers `not_ready`
  until ready), the first prices, then `ready`: intents are accepted.
- Order of stop: the socket first (no new intent), the loops, the gateway, a last publish
  attempt, Redis, the journal (and its lock).
- Redis: `[surface] redis_url`, or the embedded Redis of the connector in the same workdir.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fxconnector.app import logs
from fxconnector.config.calendars import load_calendar
from fxconnector.config.schema import Config
from fxconnector.config.secrets import Secrets
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.errors import ConfigError, TransientIOError
from fxconnector.execution.core import ExecCore, ExecSettings
from fxconnector.execution.risk.limits import RiskLimits, SymbolLimits, TraderLimits
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.execution.control import ExecControlServer
from fxconnector.runtime.execution.gateways.fxcm import FxcmGateway
from fxconnector.runtime.execution.gateways.oanda import OandaGateway, check_settings
from fxconnector.runtime.execution.gateways.paper import PaperGateway
from fxconnector.runtime.execution.gateways.port import OrderGateway
from fxconnector.runtime.execution.prices import PriceReader
from fxconnector.runtime.execution.publisher import ExecPublisher
from fxconnector.runtime.execution.service import ExecService, ProcessIdentity
from fxconnector.runtime.publish.embedded import SOCKET_NAME as REDIS_SOCKET_NAME
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.redis_connect import connect_surface

log = logging.getLogger("fxconnector.exec")
#: Where the connector's embedded Redis listens, under its workdir (`runtime.publish.embedded`).
EMBEDDED_REDIS_DIR: Final = "redis"
#: The demo's calendar: never with real money.
ALWAYS_OPEN: Final = "always_open"
#: The paper broker's books, under the journal folder (their own journal and lock).
PAPER_DIR: Final = "paper"
#: The fxcm bridge's working folder (the SDK's caches), under the journal folder.
FXCM_DIR: Final = "fxcm"


def risk_limits(config: Config) -> RiskLimits:
    """The core's limits from `[execution]`."""
    execution = config.execution
    return RiskLimits(
        traders={
            name: TraderLimits(
                symbols={
                    symbol: SymbolLimits(
                        max_units_per_order=limits.max_units_per_order,
                        max_open_units=limits.max_open_units,
                        max_notional=limits.max_notional,
                        max_daily_loss=limits.max_daily_loss,
                    )
                    for symbol, limits in trader.symbols.items()
                },
                max_orders_per_minute=trader.max_orders_per_minute,
            )
            for name, trader in execution.traders.items()
        },
        max_price_age_ms=execution.max_price_age_ms,
        max_intent_age_ms=execution.max_intent_age_ms,
    )


def surface_url(config: Config) -> str:
    """`[surface] redis_url`, else the embedded Redis of the connector in the same workdir."""
    if config.surface.redis_url:
        return config.surface.redis_url
    return f"unix://{Path(config.workdir) / EMBEDDED_REDIS_DIR / REDIS_SOCKET_NAME}"


def traded_symbols(config: Config) -> tuple[str, ...]:
    """Every symbol some trader may trade (the prices the process reads)."""
    return tuple(
        sorted({s for trader in config.execution.traders.values() for s in trader.symbols})
    )


@dataclass(slots=True)
class ExecProcess:
    """Everything `fxconnector exec` runs, built from the config; `run` starts it."""

    config: Config
    secrets: Secrets
    clock: Clock
    calendars: CalendarProfile
    make_gateway: Callable[[], OrderGateway]

    async def run(self, stop: asyncio.Event, announce: Callable[[str], None]) -> int:
        """Serve until `stop` is set; 0, or the failure raised once stopped."""
        config = self.config
        execution = config.execution
        keys = SurfaceKeys(config.surface.namespace, config.surface.cluster)
        redis = connect_surface(surface_url(config), self.secrets, cluster=config.surface.cluster)
        core = ExecCore(
            risk_limits(config),
            self.calendars,
            ExecSettings(
                ack_timeout_ms=execution.ack_timeout_ms,
                query_interval_ms=execution.query_interval_ms,
                unknown_halt_ms=execution.unknown_halt_ms,
                not_found_grace_ms=execution.not_found_grace_ms,
            ),
        )
        service = ExecService(
            core,
            Path(execution.journal_dir),
            self.make_gateway(),
            self.clock,
            ExecPublisher(redis, keys, maxlen=execution.events_maxlen),
            PriceReader(redis, keys),
            traded_symbols(config),
            ProcessIdentity(
                pid=os.getpid(),
                started_ms=self.clock.now_ms(),
                gateway=execution.gateway,
                # A few periods, and never under 5 s: a busy period does not blink it out.
                ttl_ms=max(5_000, 5 * execution.tick_interval_ms),
            ),
            call_timeout_s=call_timeout_s(config),
        )
        control = ExecControlServer(Path(execution.socket_path), service)
        started = False
        tasks: list[asyncio.Task[None]] = []
        try:
            # The paper books' lock, then the journal's (StoreLocked: another exec process),
            # the replay, the reconcile of every open order.
            open_orders = await service.start()
            started = True
            for torn in service.journal.torn:
                logs.emit(log, logging.WARNING, "exec.journal_torn_tail_cut", detail=torn)
            await control.start()
            await service.step()  # the first prices before the first intent
            control.ready()
            logs.emit(
                log,
                logging.INFO,
                "exec.started",
                gateway=execution.gateway,
                replayed_events=service.replayed,
                reconciled_orders=open_orders,
                socket=execution.socket_path,
                journal=str(service.journal.path),
            )
            announce(
                f"fxconnector exec {execution.gateway}: accepting intents on "
                f"{execution.socket_path} (journal {service.journal.path}, {service.replayed} "
                f"events replayed, {open_orders} open orders reconciled)"
            )
            loop = asyncio.create_task(
                _loop(service, execution.tick_interval_ms / 1000, stop), name="prices"
            )
            tasks.append(loop)
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([waiter, loop], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if loop.done() and loop.exception() is not None:
                raise loop.exception()  # type: ignore[misc]
        finally:
            await control.close()  # no new intent from here on
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if started:
                await service.close()  # the engine's tasks, the gateway, the journal
            with contextlib.suppress(TransientIOError):
                await service.publisher.publish()  # a last attempt; the journal has it all
            await redis.aclose()
            logs.emit(log, logging.INFO, "exec.stopped")
        return 0


async def _loop(service: ExecService, period_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await service.step()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period_s)


def build_exec(config: Config, secrets: Secrets, clock: Clock) -> ExecProcess:
    """The exec process of `config` (nothing starts until `run`)."""
    overrides = Path(config.calendar.overrides_path) if config.calendar.overrides_path else None
    calendars = load_calendar(config.calendar.profile, now_ms=clock.now_ms(), path=overrides)
    if config.execution.gateway == "oanda":
        check_settings(config.execution.oanda, secrets.oanda_token)  # ConfigError: exit 2
        if config.execution.oanda.environment == "live" and config.calendar.profile == ALWAYS_OPEN:
            raise ConfigError(
                "execution.oanda.environment 'live' on the always_open calendar (the demo's): "
                "real money needs the market-closed check; run with --profile fx"
            )
    if config.execution.gateway == "fxcm":
        fxcm_gateway(config, secrets, clock)  # ConfigError without credentials: exit 2, at once

    def make_gateway() -> OrderGateway:
        if config.execution.gateway == "oanda":
            # The token from the secrets (env or file), revealed only into request headers.
            return OandaGateway(config.execution.oanda, secrets.oanda_token, clock)
        if config.execution.gateway == "fxcm":
            return fxcm_gateway(config, secrets, clock)
        gateway = PaperGateway(
            Path(config.execution.journal_dir) / PAPER_DIR,
            clock,
            max_quote_age_ms=config.execution.max_price_age_ms,
        )
        return gateway  # opened (its books' lock and replay) by the engine's start

    return ExecProcess(config, secrets, clock, calendars, make_gateway)


def call_timeout_s(config: Config) -> float:
    """How long the engine lets one gateway call run before the order is UNKNOWN: never
    shorter than the gateway's own request bound (an OANDA submit is two requests, the check
    by client id and the post), so a configured timeout means what it says."""
    execution = config.execution
    if execution.gateway == "oanda":
        return max(10.0, 2 * execution.oanda.request_timeout_s + 2.0)
    if execution.gateway == "fxcm":
        return max(10.0, execution.fxcm.request_timeout_s + 5.0)
    return 10.0


def fxcm_gateway(config: Config, secrets: Secrets, clock: Clock) -> FxcmGateway:
    """`gateway = "fxcm"`: the bridge under `[execution.fxcm] python`, the secrets' user and
    password (ConfigError without them)."""
    fxcm = config.execution.fxcm
    return FxcmGateway(
        python=fxcm.python,
        url=fxcm.url,
        connection=fxcm.connection,
        user=secrets.fxcm_user,
        password=secrets.fxcm_password,
        clock=clock,
        workdir=Path(config.execution.journal_dir) / FXCM_DIR,
        pass_env=fxcm.pass_env,
        request_timeout_s=fxcm.request_timeout_s,
        connect_timeout_s=fxcm.connect_timeout_s,
    )
