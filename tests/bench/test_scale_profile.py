"""bench/scale_profile.py: py-spy's collapsed stacks summed per area of the source tree."""

from __future__ import annotations

from bench.scale_profile import area, summarise

LOOP = "Runner.run (asyncio/runners.py:118);BaseEventLoop._run_once (asyncio/base_events.py:1922)"
RAW = "\n".join(
    [
        f"{LOOP};EpollSelector.select (selectors.py:468) 6",
        f"{LOOP};ticks (fxconnector/runtime/ingest/broker/sim/broker.py:90) 3",
        f"{LOOP};run (fxconnector/runtime/publish/redis_surface.py:210);"
        "Encoder.encode (redis/_parsers/encoders.py:20) 1",
    ]
)
SURFACE = "fxconnector/runtime/publish/redis_surface.py"
PUBLISHING = "\n".join(
    [
        f"{LOOP};RedisSurface._flush ({SURFACE}:417);SurfaceWrites.previews (x.py:90) 2",
        f"{LOOP};ClusterNode.execute_pipeline (redis/asyncio/cluster.py:1) 1",
        f"{LOOP};_write_status (fxconnector/app/x.py:1);RedisSurface.write_status ({SURFACE}:1);"
        "AbstractConnection._send_packed_command (redis/asyncio/connection.py:1) 1",
        f"{LOOP};LiveBuilder.preview (fxconnector/core/builders/live.py:1) 4",
    ]
)


def test_areas_are_our_packages_or_the_library() -> None:
    assert area("fxconnector/runtime/ingest/broker/sim/broker.py") == "runtime/ingest/broker/sim"
    assert area("/x/site-packages/redis/client.py") == "redis"
    assert area("asyncio/runners.py") == "asyncio"


def test_idle_select_is_left_out_and_busy_samples_are_shared() -> None:
    summary = summarise(RAW)
    assert summary["samples"] == 4
    assert summary["idle_samples"] == 6
    assert summary["inclusive_pct"]["runtime/ingest/broker/sim"] == 75.0
    assert summary["inclusive_pct"]["runtime/publish"] == 25.0
    assert summary["inclusive_pct"]["asyncio"] == 100.0
    assert summary["self_pct"] == {
        "ticks (runtime/ingest/broker/sim)": 75.0,
        "Encoder.encode (redis)": 25.0,
    }


def test_publishing_is_the_flush_and_redis_pipeline_tasks_not_the_status() -> None:
    summary = summarise(PUBLISHING)
    assert summary["samples"] == 8
    assert summary["publish_pct"] == 37.5  # 2 in the flush + 1 cluster pipeline task, of 8
    assert "publishing to Redis" in summary["summary"]
