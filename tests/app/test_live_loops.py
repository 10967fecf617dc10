"""LiveState.complete: a higher-timeframe preview of the bucket live ticks joined mid-way holds
the bucket's earlier finals (DESIGN §5.3), read from the real store of a real pipeline on the
sim broker, and follows the fast path as it finalizes the minute before the first live one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from fxconnector.app.composition import build
from fxconnector.app.live_loops import LiveState
from fxconnector.config.schema import Config
from fxconnector.config.secrets import Secrets
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.runtime.clock import ManualClock
from tests.sinks import RecordingSink

HOUR = 1_709_733_600_000  # Wednesday 2024-03-06 14:00 UTC: a 1h bucket's open
FIRST = HOUR + 30 * MINUTE_MS  # the first live minute, 14:30


def expected(preview: OhlcvEvent, head: list[OhlcvEvent]) -> tuple[object, ...]:
    return (
        head[0].open,
        max(preview.high, *(b.high for b in head)),
        min(preview.low, *(b.low for b in head)),
        preview.close,
        sum(b.volume for b in head) + preview.volume,
        sum(b.tick_count for b in head) + preview.tick_count,
    )


def ohlcv(event: OhlcvEvent) -> tuple[object, ...]:
    return (event.open, event.high, event.low, event.close, event.volume, event.tick_count)


def test_a_preview_joined_mid_bucket_holds_the_buckets_earlier_finals(tmp_path: Path) -> None:
    config = msgspec.convert({"workdir": str(tmp_path), "broker": {"symbols": ["EURUSD"]}}, Config)
    clock = ManualClock(FIRST + 1_000)
    parts = build(config, Secrets(), clock)
    parts.store.open()
    pipeline = parts.make_pipeline(RecordingSink(), {"EURUSD": HOUR})
    # 14:30:01: the broker has not passed 14:29 yet (the safety delay), so finals end at 14:28.
    asyncio.run(pipeline.advance(clock.now_ms()))
    finals = [b.event() for b in parts.store.bars("EURUSD", Timeframe.M1, HOUR, FIRST)]
    assert finals
    assert finals[-1].open_ms < FIRST - MINUTE_MS
    assert pipeline.on_tick(Tick("EURUSD", 1.0851, 1.0853, FIRST + 1_000), clock.now_ms())
    live = LiveState()
    (preview,) = [p for p in pipeline.builder.previews("EURUSD") if p.tf is Timeframe.H1]
    assert (preview.open_ms, preview.tick_count) == (HOUR, 1)

    merged = live.complete(parts, pipeline, preview)
    assert (merged.symbol, merged.tf, merged.open_ms, merged.close_ms) == (
        "EURUSD",
        Timeframe.H1,
        HOUR,
        preview.close_ms,
    )
    assert (merged.complete, merged.source, merged.event_ts) == (
        False,
        preview.source,
        preview.event_ts,
    )
    assert ohlcv(merged) == expected(preview, finals)
    assert live.complete(parts, pipeline, preview) == merged  # the same, until the broker moves

    # The fast path passes 14:29: the head is read again and now reaches the first live minute.
    clock.set(FIRST + 5_000)
    asyncio.run(pipeline.advance(clock.now_ms()))
    whole = [b.event() for b in parts.store.bars("EURUSD", Timeframe.M1, HOUR, FIRST)]
    assert whole[-1].open_ms == FIRST - MINUTE_MS
    assert len(whole) > len(finals)
    assert ohlcv(live.complete(parts, pipeline, preview)) == expected(preview, whole)

    # The 1m preview and a bucket that opened after the first live minute are left as they are.
    m1 = next(p for p in pipeline.builder.previews("EURUSD") if p.tf is Timeframe.M1)
    assert live.complete(parts, pipeline, m1) is m1
    later = msgspec.structs.replace(preview, open_ms=HOUR + 60 * MINUTE_MS)
    later = msgspec.structs.replace(later, close_ms=later.open_ms + Timeframe.H1.ms - 1)
    assert live.complete(parts, pipeline, later) is later
