"""The composition root's history plan: the profiles meet their bound; a config that cannot is
refused before anything starts (exit 2), with N, B, the bound and the limit."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from fxconnector.app import live_status
from fxconnector.app.composition import build, history_plan
from fxconnector.app.live_loops import LiveState
from fxconnector.app.main import main
from fxconnector.config.loader import load_config
from fxconnector.config.secrets import Secrets
from fxconnector.core.errors import ConfigError
from fxconnector.core.model.status import ErrorEntry, SurfaceState
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.publish.redis_surface import RedisSurface
from tests.redis_server import free_port
from tests.sinks import RecordingSink

START = 1_549_238_400_000  # 2019-02-04T00:00:00Z, Monday


@pytest.mark.parametrize("profile", ["demo", "fx"])
def test_the_profiles_meet_their_own_bound(profile: str) -> None:
    config = load_config(profile=profile)
    plan = history_plan(config)
    assert plan.every_minutes == 1
    assert plan.bound_ms <= config.broker.max_final_lag_s * 1000
    assert plan.bound_ms == 2_000 + 4 * 1_000  # 3 symbols, 1 s a call, one heavy call ahead


def test_28_symbols_fit_the_default_budget_and_100_are_refused_with_the_numbers() -> None:
    symbols = [f"S{i:05d}" for i in range(100)]
    fits = load_config(profile="fx", overrides={"broker.symbols": symbols[:28]})
    assert history_plan(fits).every_minutes == 1
    refused = load_config(profile="fx", overrides={"broker.symbols": symbols})
    with pytest.raises(ConfigError) as caught:
        history_plan(refused)
    message = str(caught.value)
    for needle in (
        "N = 100 symbols",
        "B = 30 history requests/min",
        "worst-case final lag of 208 s",
        "max_final_lag_s = 120 s",
    ):
        assert needle in message, message
    # The same symbols with the minutes batched under a limit they meet: every 4 minutes.
    relaxed = load_config(
        profile="fx", overrides={"broker.symbols": symbols, "broker.max_final_lag_s": 300}
    )
    assert history_plan(relaxed).every_minutes == 4


def test_a_budget_that_leaves_the_fast_path_nothing_is_refused() -> None:
    config = load_config(
        profile="fx",
        overrides={"broker.history_requests_per_min": 2, "broker.history_reserved_per_min": 2},
    )
    with pytest.raises(ConfigError, match="leave the 1m fast path none"):
        history_plan(config)


def test_run_refuses_a_config_over_its_bound_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            "--workdir",
            str(tmp_path / "var"),
            "--http",
            f"127.0.0.1:{free_port()}",
            "--set",
            "broker.max_final_lag_s=5",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("fxconnector run: error: history plan: N = 3 symbols")
    assert "worst-case final lag of 6 s" in err[0]
    assert "max_final_lag_s = 5 s" in err[0]
    assert not (tmp_path / "var" / "ssot").exists()  # nothing was opened


def test_the_pipeline_and_the_budget_follow_the_plan(tmp_path: Path) -> None:
    """The fast path gets the plan; the budget keeps a whole turn's tokens from heavy work;
    status reports the bound."""
    symbols = [f"S{i:05d}" for i in range(60)]
    config = load_config(
        profile="demo",
        overrides={
            "workdir": str(tmp_path),
            "broker.symbols": symbols,
            "broker.history_requests_per_min": 30,
            "broker.max_final_lag_s": 300,
        },
    )
    parts = build(config, Secrets(), ManualClock(START))
    parts.store.open()
    try:
        pipeline = parts.make_pipeline(RecordingSink(), dict.fromkeys(symbols, START))
        assert pipeline.plan is parts.plan
        assert (parts.plan.every_minutes, parts.plan.group_size) == (3, 20)
        assert parts.budget is not None
        assert parts.budget.config.fast_reserve == 20
        assert parts.budget.config.requests_per_min == 30
        facts = live_status.build_facts(
            parts, pipeline, cast(RedisSurface, _Surface()), LiveState(), START
        )
        status = parts.status_builder.build(facts)
        assert status.broker.final_lag_bound_s == parts.plan.bound_ms / 1000 == 143
    finally:
        parts.store.close()


class _Surface:
    """What `_facts` reads of the surface."""

    state = SurfaceState.OK
    backlog = 0
    errors: tuple[ErrorEntry, ...] = ()
