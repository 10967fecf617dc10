"""bench.scale's measuring parts: lags from stream entry ids, percentiles, slopes, gaps."""

from __future__ import annotations

import os

import redis
from bench.scale_probe import (
    Sample,
    StreamLags,
    cpu_seconds,
    missing_finals,
    per_minute,
    percentile,
    rss_mb,
    slope_per_minute,
)

from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish.keys import STREAM_FIELD, SurfaceKeys
from tests.redis_server import RedisServer

MINUTE = 60_000
T0 = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE


def event(symbol: str, tf: Timeframe, open_ms: int, *, final: bool, event_ts: int) -> bytes:
    close_ms = open_ms + (MINUTE if tf is Timeframe.M1 else 5 * MINUTE) - 1
    bar = OhlcvEvent(
        symbol=symbol,
        tf=tf,
        open_ms=open_ms,
        close_ms=close_ms,
        open=1.0,
        high=1.0,
        low=1.0,
        close=1.0,
        volume=7.0,
        tick_count=7,
        complete=final,
        source=Source.HISTORY if final else Source.STREAM,
        event_ts=close_ms if final else event_ts,
        rev=0,
    )
    return encode(bar)


def test_lags_come_from_the_entry_ids_and_skip_other_timeframes_and_old_events(
    redis_server: RedisServer,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    key = SurfaceKeys("fxconnector").events
    entries = [
        # the id's milliseconds stand for the Redis arrival time
        (
            f"{T0 + 2 * MINUTE + 2_500}-0",
            event("EURUSD", Timeframe.M1, T0 + MINUTE, final=True, event_ts=0),
        ),
        (
            f"{T0 + 2 * MINUTE + 2_600}-0",
            event(
                "EURUSD",
                Timeframe.M1,
                T0 + 2 * MINUTE,
                final=False,
                event_ts=T0 + 2 * MINUTE + 2_400,
            ),
        ),
        (
            f"{T0 + 2 * MINUTE + 2_700}-0",
            event("EURUSD", Timeframe.M5, T0, final=False, event_ts=T0 + 2 * MINUTE + 100),
        ),
        (
            f"{T0 + 2 * MINUTE + 2_800}-0",
            event("EURUSD", Timeframe.M1, T0 - MINUTE, final=True, event_ts=0),
        ),
    ]
    for entry_id, payload in entries:
        client.xadd(key, {STREAM_FIELD: payload}, id=entry_id)
    reader = StreamLags({key: client}, T0, STREAM_FIELD)
    reader.start()
    reader.stop()
    assert reader.error is None
    lags = reader.lags
    assert lags.entries == 4
    assert lags.final_ms == [2_501]  # close_ms is the minute's last millisecond
    assert lags.preview_ms == [200]
    assert lags.finals == {("EURUSD", T0 + MINUTE)}
    assert lags.final_ticks == 7
    client.close()


def test_percentile_is_the_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile([5], 0.99) == 5
    assert percentile([], 0.5) is None


def test_slope_is_per_minute_and_needs_three_points() -> None:
    points = [(t * 60.0, 100.0 + 0.5 * t) for t in range(10)]
    slope = slope_per_minute(points)
    assert slope is not None
    assert abs(slope - 0.5) < 1e-9
    assert slope_per_minute(points[:2]) is None


def test_per_minute_picks_the_first_sample_of_each_minute() -> None:
    samples = [Sample(100.0 + s, s / 10, 50.0 + s) for s in range(0, 200, 7)]
    picked = per_minute(samples, 110.0)
    assert [int((p.wall - 110.0) // 60) for p in picked] == [0, 1, 2, 3]  # walls 114..296
    assert picked[0].wall == 114.0


def test_missing_finals_counts_minutes_closing_in_the_window_without_a_final() -> None:
    seen = {("EURUSD", T0), ("EURUSD", T0 + MINUTE), ("GBPUSD", T0)}
    missing = missing_finals(seen, ["EURUSD", "GBPUSD"], T0, T0 + 2 * MINUTE)
    assert missing == {"GBPUSD": 1}


def test_proc_figures_of_this_process() -> None:
    assert cpu_seconds(os.getpid()) > 0
    assert 1 < rss_mb(os.getpid()) < 100_000
