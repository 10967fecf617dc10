"""HttpClient backs off when the stream loses its place again right after a reload.

The real HTTP server on a real Redis; the stream is trimmed past the cursor of every
`/api/bars` answer before the answer leaves the server (a retention shorter than the client's
round trip), so each bootstrap is followed at once by `cursor_expired`. The client must wait
between those reloads (capped exponential backoff with jitter), say so in words, and follow
normally again once the stream keeps its place.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest

from fxconnector.client import Backoff, HttpClient
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.runtime.publish.http_common import PushSettings
from fxconnector.runtime.publish.surface_reader import parse_stream_id
from tests.redis_server import RedisServer
from tests.runtime.publish.api_harness import T0, bar
from tests.runtime.publish.test_fresh_cursor import M1, M15, SYMBOL, Served, serving

pytestmark = pytest.mark.redis

WAIT_S = 5.0
BACKOFF = Backoff(initial_s=0.25, cap_s=2.0)
LOOPS = 6  # reloads answered with a cursor the stream has already lost


@pytest.fixture
def served(redis_server: RedisServer) -> Iterator[Served]:
    # The push reader keeps one entry in memory: a cursor behind it is read from Redis, where
    # the trimmed stream tells it expired.
    push = PushSettings(heartbeat_s=0.5, block_ms=200, backoff_max_s=0.5, window=1)
    with serving(redis_server.url, redis_server.client(), cluster=False, push=push) as found:
        yield found


def test_repeated_resyncs_right_after_a_reload_back_off_then_follow(served: Served) -> None:
    for i in range(2):
        served.writer.publish(bar(SYMBOL, M15, T0 + i * M15.ms))
    minute = iter(range(10_000))

    def move_on_and_trim() -> str:
        ids = [served.writer.publish(bar(SYMBOL, M1, T0 + next(minute) * M1.ms)) for _ in range(2)]
        served.trim_to(ids[-1])
        return ids[-1]

    async def lose_the_place() -> None:
        # Before an /api/bars answer leaves the server: the stream moves on and is trimmed
        # past the cursor the answer carries, and the push reader has read what was added.
        newest = parse_stream_id(await asyncio.to_thread(move_on_and_trim))
        fanout = served.app.app.state.fanout  # type: ignore[attr-defined]
        for _ in range(1000):
            if (await fanout.now({served.stream: ""}, WAIT_S))[served.stream] >= newest:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the push reader did not read the new entries")

    served.app.before_bars_answer = lose_the_place
    update = bar(SYMBOL, M15, T0 + 2 * M15.ms, final=False)
    delays: list[float] = []

    async def publish_update_once() -> None:
        served.app.before_bars_answer = None
        await asyncio.to_thread(served.writer.publish, update)

    async def sleep(delay_s: float) -> None:
        delays.append(delay_s)
        if len(delays) == LOOPS:
            # The stream keeps its place from now on; an update follows the next answer.
            served.app.before_bars_answer = publish_update_once
        await asyncio.sleep(0)

    async def run() -> tuple[OhlcvEvent, Any]:
        async with HttpClient(
            served.url, SYMBOL, ["15m"], backoff=BACKOFF, rng=random.Random(7), sleep=sleep
        ) as client:
            changes: Any = client.changes()
            try:
                async with asyncio.timeout(WAIT_S):
                    change = await anext(changes)
            finally:
                await changes.aclose()
            return change.event, client.stats

    event, stats = asyncio.run(run())
    # The update published after the last wait arrives; the book kept everything.
    assert event == update
    # One wait per reload that lost its place at once, doubling from initial_s up to cap_s,
    # each with its jitter (a factor in [0.5, 1]).
    assert len(delays) == LOOPS
    for k, delay_s in enumerate(delays, start=1):
        ceiling = min(BACKOFF.cap_s, BACKOFF.initial_s * 2 ** (k - 1))
        assert ceiling * 0.5 <= delay_s <= ceiling, (k, delays)
    assert delays[-1] > delays[0]
    assert stats.resync_waits == LOOPS
    assert stats.bootstraps == LOOPS + 1
    assert served.app.bars_requests == LOOPS + 1
    assert stats.last_error.startswith("the stream lost our place again right after a reload")
    assert stats.events_read == 1
