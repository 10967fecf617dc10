"""bench.scale's set-up: symbol names, the config it writes and the history plan it gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.scale import plan_of, symbol_names, write_config

from fxconnector.config.loader import load_config
from fxconnector.core.errors import ConfigError


def test_symbol_names_are_distinct_pairs_g8_first() -> None:
    names = symbol_names(300)
    assert len(set(names)) == 300
    assert {"EURUSD", "GBPUSD", "USDJPY", "AUDUSD"} <= set(names[:28])
    assert all(len(name) == 6 for name in names)
    with pytest.raises(SystemExit):
        symbol_names(301)


def test_the_written_config_is_accepted_with_realistic_flat_rates(tmp_path: Path) -> None:
    path = write_config(tmp_path, symbol_names(200), "redis://127.0.0.1:1/0", cluster=False)
    config = load_config(path)
    assert len(config.broker.symbols) == 200
    sim = config.broker.sim
    assert (sim.ticks_per_minute, sim.ticks_per_minute_max, sim.hourly) == (300, 1200, False)
    assert config.surface.redis_url == "redis://127.0.0.1:1/0"
    assert config.calendar.profile == "always_open"


def test_200_symbols_are_planned_every_minute_within_the_final_lag_limit(tmp_path: Path) -> None:
    """The sim answers history locally: a 20 ms call allowance lets the plan ask all 200 symbols
    every minute (the connector's own plan, the one it logs as `history.plan` and enforces)."""
    path = write_config(tmp_path, symbol_names(200), "redis://127.0.0.1:1/0", cluster=False)
    plan = plan_of(path, [])
    assert (plan["every_minutes"], plan["per_minute"]) == (1, 200)
    assert plan["final_lag_bound_s"] == pytest.approx(2 + 201 * 0.02)
    assert plan["final_lag_bound_s"] <= load_config(path).broker.max_final_lag_s
    # a real broker's 1 s a call would be refused at start (the bound is over 120 s)
    with pytest.raises(ConfigError, match="max_final_lag_s"):
        plan_of(path, ["broker.history_call_allowance_ms=1000"])


def test_a_cluster_process_gets_the_cluster_layout(tmp_path: Path) -> None:
    path = write_config(tmp_path, symbol_names(100), "redis://127.0.0.1:1", cluster=True)
    config = load_config(path)
    assert config.surface.cluster
    assert config.surface.redis_url == "redis://127.0.0.1:1"
