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
