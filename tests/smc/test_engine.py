"""The engine's input rules and its revision rule (a revised final re-derives from that bar on)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fxconnector.core.errors import ContractViolation, FxConnectorError, RevisionTooOld
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.smc import SmcHint, SmcKind
from fxconnector.smc import SmcConfig, SmcEngine, order_key
from tests.conftest import REPO
from tests.smc.bars import dukascopy_minutes, fxcm_year

#: Small checkpoints and horizon so a short series exercises restore, replay and forgetting.
CONFIG = SmcConfig(checkpoint_every_bars=50, revision_horizon_bars=400)
SHARED = Path(os.environ.get("FXCONNECTOR_SHARED_DATA", REPO.parent / "shared" / "data"))


def gbpusd_minutes() -> tuple[OhlcvEvent, ...]:
    """1,200 FXCM GBPUSD minutes of July 2012 (the shared_data fixture has checked the folder)."""
    return fxcm_year(SHARED, "gbpusd", 2012)[200_000:201_200]


@pytest.fixture(scope="module")
def minutes(shared_data: Path) -> tuple[OhlcvEvent, ...]:
    return fxcm_year(shared_data, "gbpusd", 2012)[200_000:201_200]


def test_preview_other_series_and_out_of_order_bars_are_refused(
    minutes: Sequence[OhlcvEvent],
) -> None:
    engine = SmcEngine("GBPUSD", "1m", CONFIG)
    for bar in [*minutes[:10], *minutes[11:20]]:
        engine.update(bar)
    preview = msgspec.structs.replace(
        minutes[20], complete=False, source=Source.STREAM, event_ts=minutes[20].open_ms
    )
    with pytest.raises(ContractViolation, match="final bars only"):
        engine.update(preview)
    with pytest.raises(ContractViolation, match="got a bar of EURUSD"):
        engine.update(msgspec.structs.replace(minutes[20], symbol="EURUSD"))
    with pytest.raises(ContractViolation, match="out of order"):
        engine.update(minutes[10])  # a new key older than the last bar: not a revision
    with pytest.raises(ContractViolation, match="is not newer"):
        engine.update(msgspec.structs.replace(minutes[5], high=minutes[5].high + 0.01))
    assert issubclass(ContractViolation, FxConnectorError)


def test_the_same_bar_again_returns_nothing(minutes: Sequence[OhlcvEvent]) -> None:
    engine = SmcEngine("GBPUSD", "1m", CONFIG)
    for bar in minutes[:100]:
        engine.update(bar)
    assert engine.update(minutes[99]) == []
    assert engine.update(minutes[42]) == []


def revised(bar: OhlcvEvent, shift: float) -> OhlcvEvent:
    return msgspec.structs.replace(
        bar, high=bar.high + abs(shift), low=bar.low - abs(shift), close=bar.close + shift, rev=1
    )


def collapse(hints: Sequence[SmcHint]) -> dict[str, SmcHint]:
    """The latest revision of each hint, without the retracted ones, with rev set aside."""
    latest: dict[str, SmcHint] = {}
    for hint in hints:
        latest[hint.id] = hint
    return {k: msgspec.structs.replace(h, rev=0) for k, h in latest.items() if not h.retracted}


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    at=st.integers(min_value=50, max_value=1_199),
    back=st.integers(min_value=0, max_value=380),
    shift=st.floats(min_value=-0.003, max_value=0.003, allow_nan=False),
)
def test_a_revision_re_derives_from_that_bar_on_and_equals_a_run_over_the_revised_series(
    shared_data: Path, at: int, back: int, shift: float
) -> None:
    k = max(0, at - 1 - back)  # a bar the engine has taken
    minutes = gbpusd_minutes()
    engine = SmcEngine("GBPUSD", "1m", CONFIG)
    emitted: list[SmcHint] = []
    for bar in minutes[:at]:
        emitted.extend(engine.update(bar))
    new = revised(minutes[k], shift)
    changes = engine.update(new)
    previous = {h.id: h for h in emitted}
    for hint in changes:
        assert hint.confirm_ts >= new.close_ms  # nothing confirmed before the bar moves
        old = previous.get(hint.id)
        assert hint.rev == (0 if old is None else old.rev + 1)
        assert not hint.retracted or old is not None
    assert changes == sorted(changes, key=lambda h: (h.confirm_ts,))
    emitted.extend(changes)
    for bar in minutes[at:]:
        emitted.extend(engine.update(bar))
    series = [*minutes[:k], new, *minutes[k + 1 :]]
    fresh = SmcEngine("GBPUSD", "1m", CONFIG)
    expected = [h for bar in series for h in fresh.update(bar)]
    assert collapse(emitted) == collapse(expected)


def test_an_unchanged_re_derivation_emits_nothing(minutes: Sequence[OhlcvEvent]) -> None:
    engine = SmcEngine("GBPUSD", "1m", CONFIG)
    for bar in minutes[:300]:
        engine.update(bar)
    same_prices = msgspec.structs.replace(minutes[250], rev=1)
    assert engine.update(same_prices) == []


def test_a_revision_beyond_the_horizon_says_to_rerun_from_the_store(
    minutes: Sequence[OhlcvEvent],
) -> None:
    engine = SmcEngine("GBPUSD", "1m", CONFIG)
    for bar in minutes[:1_000]:
        engine.update(bar)
    with pytest.raises(RevisionTooOld, match="rerun from the store"):
        engine.update(revised(minutes[100], 0.001))
    engine.update(revised(minutes[1_000 - 300], 0.001))  # within the horizon: fine


def test_engine_runs_on_dukascopy_candles_too(shared_data: Path) -> None:
    bars = dukascopy_minutes(shared_data)
    engine = SmcEngine("EURUSD", "1m")
    assert sum(len(engine.update(b)) for b in bars) > 100
    assert engine.bars_seen == len(bars)
    assert engine.last_close_ms == bars[-1].close_ms


def test_active_is_what_the_stream_has_not_ended(minutes: Sequence[OhlcvEvent]) -> None:
    engine = SmcEngine("GBPUSD", "1m", CONFIG)
    stream = [h for bar in minutes for h in engine.update(bar)]
    ended = {
        h.ref
        for h in stream
        if h.ref is not None and h.kind.value.endswith(("_mitigated", "_swept"))
    }
    zones = {SmcKind.FVG, SmcKind.OB, SmcKind.LIQUIDITY}
    open_zones = {h.id for h in stream if h.kind in zones and h.id not in ended}
    active = engine.active()
    assert {h.id for h in active if h.kind in zones} == open_zones
    broken = {h.ref for h in stream if h.kind in (SmcKind.BOS, SmcKind.CHOCH)}
    swings = [h for h in active if h.kind in (SmcKind.SWING_HIGH, SmcKind.SWING_LOW)]
    assert swings
    assert all(h.id not in broken for h in swings)
    assert {h.kind for h in active} >= {SmcKind.PREV_DAY_HIGH, SmcKind.SESSION_LONDON}
    assert active == sorted(active, key=order_key)
