"""Shared values for the execution tests: limits, a trading moment, intents, quotes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.model.intent import OrderIntent, OrderType, Side, TimeInForce
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import to_ms
from fxconnector.execution.core import ExecCore, ExecSettings
from fxconnector.execution.risk.limits import RiskLimits, SymbolLimits, TraderLimits

#: Tuesday 2026-01-06 12:00 UTC: the FX market is open (a winter day: trading day at 22:00 UTC).
OPEN_MS = to_ms(dt.datetime(2026, 1, 6, 12, 0, tzinfo=dt.UTC))
#: Saturday 2026-01-10 12:00 UTC: closed.
CLOSED_MS = to_ms(dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC))

EURUSD = SymbolLimits(
    max_units_per_order=10_000, max_open_units=20_000, max_notional=30_000.0, max_daily_loss=50.0
)
USDJPY = SymbolLimits(
    max_units_per_order=5_000, max_open_units=5_000, max_notional=1_000_000.0, max_daily_loss=5e3
)
LIMITS = RiskLimits(
    traders={
        "alice": TraderLimits({"EURUSD": EURUSD, "USDJPY": USDJPY}, max_orders_per_minute=5),
        "bob": TraderLimits({"EURUSD": EURUSD}, max_orders_per_minute=100),
    },
    max_price_age_ms=2_000,
)
SETTINGS = ExecSettings(
    ack_timeout_ms=5_000, query_interval_ms=1_000, unknown_halt_ms=30_000, not_found_grace_ms=10_000
)


def make_core(calendars: CalendarProfile, limits: RiskLimits = LIMITS) -> ExecCore:
    return ExecCore(limits, calendars, SETTINGS)


def quote(
    symbol: str = "EURUSD", bid: float = 1.1000, ask: float = 1.1002, ts_ms: int = OPEN_MS
) -> Tick:
    return Tick(symbol, bid, ask, ts_ms)


def intent(
    intent_id: str = "i-1",
    *,
    trader: str = "alice",
    symbol: str = "EURUSD",
    side: Side = Side.BUY,
    units: int = 1_000,
    type: OrderType = OrderType.MARKET,
    price: float | None = None,
    ts: int = OPEN_MS,
    **extra: Any,
) -> OrderIntent:
    tif: TimeInForce | None = extra.pop("time_in_force", None)
    return OrderIntent(
        intent_id=intent_id,
        trader=trader,
        symbol=symbol,
        side=side,
        units=units,
        type=type,
        ts=ts,
        price=price,
        time_in_force=tif,
        **extra,
    )
