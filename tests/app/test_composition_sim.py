"""The composition root hands the sim broker its rate settings ([broker.sim])."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from fxconnector.app.composition import build
from fxconnector.config.schema import Config
from fxconnector.config.secrets import Secrets
from fxconnector.core.time_geom import HOUR_MS
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator
from tests.conftest import calendar_profile

QUIET_HOUR = 1_709_762_400_000  # Wednesday 2024-03-06 22:00 UTC: the rollover, the quietest hour


def test_per_symbol_rates_and_a_flat_day_reach_the_sim_broker(tmp_path: Path) -> None:
    symbols = ["EURUSD", "GBPUSD"]
    config = msgspec.convert(
        {
            "workdir": str(tmp_path),
            "calendar": {"profile": "always_open"},
            "broker": {
                "symbols": symbols,
                "sim": {"ticks_per_minute": 300, "ticks_per_minute_max": 1200, "hourly": False},
            },
        },
        Config,
    )
    parts = build(config, Secrets(), ManualClock(QUIET_HOUR + 2 * HOUR_MS))
    calendars = calendar_profile("always_open")
    expected = TickGenerator(
        42, {s: calendars.for_symbol(s) for s in symbols}, 300, ticks_per_minute_max=1200
    )
    for symbol in symbols:
        answer = asyncio.run(parts.broker.history_1m(symbol, QUIET_HOUR, QUIET_HOUR + HOUR_MS))
        per_minute = sum(bar.tick_count for bar in answer.bars) / 60
        # flat: the quiet hour runs at the symbol's own average (hourly would give ~40% of it)
        assert 0.85 * expected.rate(symbol) < per_minute < 1.15 * expected.rate(symbol)
    assert expected.rate("EURUSD") != expected.rate("GBPUSD")
