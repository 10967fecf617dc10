"""What the Redis surface has accepted and Redis has not acknowledged yet (redis_surface.py).

Rules:
- Finals are never dropped here (the SSOT holds them too) and leave the queue only once Redis
  acknowledged them (`pop_published`, `take_covered`) or their symbol's lease was lost
  (`drop`); previews are coalesced to the latest per (symbol, tf) and ticks to the latest per
  symbol, so Redis load does not grow with tick rate.
- NoMix: a preview is never published once its series has a final at the same or a later
  open_ms (checked when it is queued and again when it is taken); each one dropped so is
  counted in `nomix_dropped`.

Synchronous and without I/O: it knows nothing of Redis, leases or the tail cache.
"""

from __future__ import annotations

from collections import deque

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.publish.surface_lua import Series

Key = tuple[str, Timeframe, int]
#: A queued final and when it was queued (monotonic seconds, for the publish latency).
Queued = tuple[OhlcvEvent, float]


class PublishQueue:
    """Finals in order, the latest preview per series, the latest tick per symbol."""

    def __init__(self) -> None:
        self.finals: deque[Queued] = deque()
        self._previews: dict[Series, OhlcvEvent] = {}
        self._ticks: dict[str, Tick] = {}
        self._final_open: dict[Series, int] = {}  # NoMix: newest final open_ms per series
        self.nomix_dropped = 0

    def __bool__(self) -> bool:
        return bool(self.finals or self._previews or self._ticks)

    def final(self, event: OhlcvEvent, now_s: float) -> None:
        self.finals.append((event, now_s))
        self.saw_final((event.symbol, event.tf), event.open_ms)

    def saw_final(self, series: Series, open_ms: int) -> None:
        """A final of `series` at `open_ms` is queued or published: older previews are not."""
        if open_ms > self._final_open.get(series, -1):
            self._final_open[series] = open_ms

    def preview(self, event: OhlcvEvent) -> None:
        series = (event.symbol, event.tf)
        if event.open_ms <= self._final_open.get(series, -1):
            self.nomix_dropped += 1
            return
        held = self._previews.get(series)
        if held is None or event.open_ms >= held.open_ms:
            self._previews[series] = event

    def tick(self, tick: Tick) -> None:
        self._ticks[tick.symbol] = tick

    def take_previews(self) -> list[OhlcvEvent]:
        taken: list[OhlcvEvent] = []
        for series, event in self._previews.items():
            if event.open_ms > self._final_open.get(series, -1):
                taken.append(event)
            else:
                self.nomix_dropped += 1  # a final for it (or a later bucket) came since
        self._previews = {}
        return taken

    def take_ticks(self) -> dict[str, Tick]:
        ticks, self._ticks = self._ticks, {}
        return ticks

    def restore(self, previews: list[OhlcvEvent], ticks: dict[str, Tick]) -> None:
        """Put back what a failed flush took, unless something newer was queued meanwhile."""
        for event in previews:
            self._previews.setdefault((event.symbol, event.tf), event)
        for symbol, tick in ticks.items():
            self._ticks.setdefault(symbol, tick)

    def pop_published(self, count: int) -> list[Queued]:
        """The `count` oldest finals, which Redis acknowledged."""
        return [self.finals.popleft() for _ in range(count)]

    def take_covered(self, covered: dict[Key, int]) -> list[Queued]:
        """Remove and return the finals a rebuild published (their key at the same or a newer
        rev)."""
        if not covered or not self.finals:
            return []
        taken: list[Queued] = []
        kept: deque[Queued] = deque()
        for item in self.finals:
            event = item[0]
            (taken if covered.get(event.key, -1) >= event.rev else kept).append(item)
        self.finals = kept
        return taken

    def drop(self, lost: set[str]) -> int:
        """Drop everything queued for the `lost` symbols; how many finals were dropped."""
        kept = deque(item for item in self.finals if item[0].symbol not in lost)
        dropped = len(self.finals) - len(kept)
        self.finals = kept
        self._previews = {k: v for k, v in self._previews.items() if k[0] not in lost}
        self._ticks = {k: v for k, v in self._ticks.items() if k not in lost}
        return dropped
