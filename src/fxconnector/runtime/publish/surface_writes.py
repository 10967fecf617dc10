"""The Redis commands one publishing cycle queues, in either key layout (keys.py).

Rules:
- Finals: one finals script call per (symbol, tf) batch (surface_lua.py), keys
  `events_for(symbol)` and `snapshot(symbol, tf)`: one symbol's, so one slot in the cluster
  layout. Previews: one previews script call per stream (the one stream, or each symbol's).
  Ticks: one HSET of `price_tik`, or a SET of each symbol's `tick` key in the cluster layout.
- Every script call carries the MINID of the time trim: the clock's now less the retention.
- Scripts are called by EVALSHA through `execute_command` (redis-py's cluster pipeline blocks
  its `evalsha` method, not the command); whoever publishes loads them first (SCRIPT LOAD,
  every primary of a cluster) and treats NOSCRIPT like any Redis error (reload, rebuild).
- The snapshot encoder keeps the bytes of each series' last snapshot (surface_lua.py); `reset`
  forgets them (a rebuild re-encodes everything).

This module must not know queues, retries, leases or connections: it only fills a pipeline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final, TypeAlias

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.tick import Tick
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.surface_lua import (
    FINALS_LUA,
    PREVIEWS_LUA,
    Series,
    SnapshotEncoder,
)

SurfacePipeline: TypeAlias = Pipeline | ClusterPipeline
SCRIPTS: Final = (FINALS_LUA, PREVIEWS_LUA)


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


FINALS_SHA: Final = _sha(FINALS_LUA)
PREVIEWS_SHA: Final = _sha(PREVIEWS_LUA)


class SurfaceWrites:
    """Queues the surface's writes on a pipeline, in the layout `keys` has."""

    def __init__(self, keys: SurfaceKeys, *, retention_ms: int, clock: Clock) -> None:
        self._keys = keys
        self._retention_ms = retention_ms
        self._clock = clock
        self._encoder = SnapshotEncoder()

    def reset(self) -> None:
        """Forget the encoded snapshots (after a rebuild everything is encoded afresh)."""
        self._encoder = SnapshotEncoder()

    def minid(self) -> int:
        """The oldest stream id time (ms) kept: now less the retention."""
        return max(0, self._clock.now_ms() - self._retention_ms)

    def finals(
        self,
        pipe: SurfacePipeline,
        series: Series,
        events: Sequence[OhlcvEvent],
        bars: Sequence[OhlcvEvent],
    ) -> None:
        """One finals script call: XADD `events`, then the snapshot of `bars` and its cursor."""
        snapshot = self._encoder.snapshot(series, bars)  # first: events reuse its bytes
        encoded = [self._encoder.event(series, event) for event in events]
        pipe.execute_command(
            "EVALSHA",
            FINALS_SHA,
            2,
            self._keys.events_for(series[0]),
            self._keys.snapshot(*series),
            self.minid(),
            snapshot,
            *encoded,
        )

    def previews(self, pipe: SurfacePipeline, previews: Sequence[OhlcvEvent]) -> None:
        """One previews script call per stream."""
        by_stream: dict[str, list[bytes]] = {}
        for event in previews:
            by_stream.setdefault(self._keys.events_for(event.symbol), []).append(encode(event))
        minid = self.minid()
        for stream, encoded in by_stream.items():
            pipe.execute_command("EVALSHA", PREVIEWS_SHA, 1, stream, minid, *encoded)

    def ticks(self, pipe: SurfacePipeline, ticks: dict[str, Tick]) -> None:
        """One HSET of `price_tik`, or a SET of each symbol's tick key (cluster layout)."""
        if not ticks:
            return
        if self._keys.cluster:
            for symbol, tick in ticks.items():
                pipe.set(self._keys.tick(symbol), encode(tick))
            return
        fields = [x for symbol, tick in ticks.items() for x in (symbol, encode(tick))]
        pipe.hset(self._keys.price_tik, items=fields)
