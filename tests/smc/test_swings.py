"""Swings: the definition exactly, ties included (docs/smc.md)."""

from __future__ import annotations

import pytest

from fxconnector.core.errors import ConfigError
from fxconnector.core.model.smc import Direction, SmcKind
from fxconnector.core.time_geom import Timeframe
from fxconnector.smc import SmcConfig, SmcEngine
from fxconnector.smc.config import load_smc_config
from tests.smc.bars import highs_lows


def swings(pairs: list[tuple[float, float]], n: int = 2) -> list[tuple[str, int, float, int]]:
    """(kind, anchor bar index, price, confirm bar index) of every swing."""
    bars = highs_lows(pairs)
    engine = SmcEngine("EURUSD", "1m", SmcConfig(swing_length=n))
    found = []
    for bar in bars:
        for hint in engine.update(bar):
            if hint.kind in (SmcKind.SWING_HIGH, SmcKind.SWING_LOW):
                anchor = next(i for i, b in enumerate(bars) if b.open_ms == hint.anchor_ts)
                confirm = next(i for i, b in enumerate(bars) if b.close_ms == hint.confirm_ts)
                assert hint.price is not None
                found.append((hint.kind.value, anchor, hint.price, confirm))
                want = Direction.BEAR if hint.kind is SmcKind.SWING_HIGH else Direction.BULL
                assert hint.direction is want
    return found


def test_a_swing_high_is_confirmed_n_bars_later() -> None:
    pairs = [(1.0, 0.9), (1.1, 0.95), (1.5, 1.0), (1.2, 1.0), (1.1, 1.0), (1.05, 0.99)]
    assert ("swing_high", 2, 1.5, 4) in swings(pairs)


def test_equal_highs_after_the_swing_keep_it_equal_highs_before_do_not() -> None:
    after_tie = [(1.0, 0.9), (1.1, 0.9), (1.5, 1.0), (1.5, 1.0), (1.2, 1.0), (1.1, 1.0)]
    found = swings(after_tie)
    assert ("swing_high", 2, 1.5, 4) in found  # >= after: the first of equal highs
    assert not any(k == "swing_high" and a == 3 for k, a, _, _ in found)  # > before fails


def test_a_swing_low_mirrors_it() -> None:
    pairs = [(1.5, 1.2), (1.4, 1.1), (1.3, 0.8), (1.3, 0.8), (1.4, 0.9), (1.5, 1.0)]
    found = swings(pairs)
    assert ("swing_low", 2, 0.8, 4) in found
    assert not any(k == "swing_low" and a == 3 for k, a, _, _ in found)


def test_no_swing_in_the_first_n_bars_nor_unconfirmed_at_the_end() -> None:
    pairs = [(2.0, 0.5), (1.0, 0.9), (1.1, 0.95), (1.9, 1.0), (1.2, 1.0)]
    found = swings(pairs)
    assert not any(a == 0 for _, a, _, _ in found)  # bar 0 has no 2 bars before it
    assert not any(a == 3 for _, a, _, _ in found)  # bar 3 waits for 2 bars after it


def test_swing_length_is_configurable_per_timeframe() -> None:
    config = load_smc_config({"swing_length": 4, "swing_length_by_tf": {"5m": 3}})
    assert config.swing_length_for(Timeframe.M5) == 3
    assert config.swing_length_for(Timeframe.M1) == 4
    with pytest.raises(ConfigError, match="unknown field"):
        load_smc_config({"swing_lenght": 4})
    with pytest.raises(ConfigError):
        load_smc_config({"swing_length": 0})
