"""Finals that stop advancing are loud: a degraded reason in status and a metric (issue 11, 2)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import msgspec
from prometheus_client import generate_latest

from fxconnector.app import live_status
from fxconnector.app.composition import build
from fxconnector.app.live_loops import LiveState
from fxconnector.config.schema import Config
from fxconnector.config.secrets import Secrets
from fxconnector.core.model.status import ErrorEntry, SurfaceState, SymbolState
from fxconnector.core.time_geom import MINUTE_MS
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.publish.redis_surface import RedisSurface
from tests.sinks import RecordingSink

START = 1_709_733_600_000  # Wednesday 2024-03-06 14:00 UTC


class Surface:
    """What `_facts` reads of the surface: a healthy one (the stall is the pipeline's)."""

    state = SurfaceState.OK
    backlog = 0
    errors: tuple[ErrorEntry, ...] = ()


def test_finals_that_stop_advancing_are_a_degraded_reason_and_a_metric(tmp_path: Path) -> None:
    config = msgspec.convert(
        {"workdir": str(tmp_path), "broker": {"symbols": ["EURUSD"], "finals_stall_s": 300}},
        Config,
    )
    clock = ManualClock(START)
    parts = build(config, Secrets(), clock)
    parts.store.open()
    pipeline = parts.make_pipeline(RecordingSink(), {"EURUSD": START - 5 * MINUTE_MS})
    asyncio.run(pipeline.advance(clock.now_ms()))  # the fast path is up to date
    surface = cast(RedisSurface, Surface())

    def degraded() -> list[str]:
        facts = live_status.build_facts(parts, pipeline, surface, LiveState(), clock.now_ms())
        return [reason for reason in facts.degraded if reason.startswith("finals")]

    assert degraded() == []
    # Nothing advances for 6 minutes (every history call failing looks the same): stalled.
    clock.set(START + 6 * MINUTE_MS)
    assert degraded() == ["finals_stalled"]
    facts = live_status.build_facts(parts, pipeline, surface, LiveState(), clock.now_ms())
    assert [(s.symbol, s.state) for s in facts.symbols] == [("EURUSD", SymbolState.STALLED)]
    text = generate_latest(parts.metrics.registry).decode()
    assert 'fxconnector_finals_stalled{symbol="EURUSD"} 1.0' in text
    # The history answers again: the finals catch up and the reason goes away.
    asyncio.run(pipeline.advance(clock.now_ms()))
    assert degraded() == []
    text = generate_latest(parts.metrics.registry).decode()
    assert 'fxconnector_finals_stalled{symbol="EURUSD"} 0.0' in text
    parts.store.close()
