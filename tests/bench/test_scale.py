"""bench.scale's set-up: symbol names, the config it writes, the --cluster gate."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.scale import main, supports_cluster, symbol_names, write_config

from fxconnector.config.loader import load_config


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


def test_cluster_says_when_this_build_cannot_run_on_a_cluster(
    capsys: pytest.CaptureFixture[str],
) -> None:
    if supports_cluster():
        pytest.skip("this build has [surface] cluster: --cluster runs for real")
    assert main(["--cluster", "--symbols", "100"]) == 2
    assert "not supported by this build" in capsys.readouterr().err
