"""The event sink port: where the pipeline hands events for publishing.

Rules: `finals` is called only after the bars are durable in the SSOT; `previews` may be
coalesced or dropped by the sink under load (previews are disposable, finals are not). Calls
never block on the network: a sink that publishes to Redis queues and returns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from operator import attrgetter
from typing import Final, Protocol

from fxconnector.core.model.bar import OhlcvEvent


class EventSink(Protocol):
    def finals(self, events: Sequence[OhlcvEvent]) -> None:
        """Durable final bars (new ones and revisions)."""
        ...

    def previews(self, events: Sequence[OhlcvEvent]) -> None:
        """Preview bars (the latest state of open or just-closed buckets)."""
        ...


_REV_TF: Final = attrgetter("rev", "tf")


class CountingSink:
    """A sink that only counts, for replays and tools that publish nowhere."""

    def __init__(self) -> None:
        self.finals_by_tf: Counter[str] = Counter()
        self.revisions_by_tf: Counter[str] = Counter()
        self.previews_seen = 0

    def finals(self, events: Sequence[OhlcvEvent]) -> None:
        # One C-level count per (rev, tf), then the names: a month's replay is 40k bars.
        for (rev, tf), count in Counter(map(_REV_TF, events)).items():
            (self.revisions_by_tf if rev else self.finals_by_tf)[tf.value] += count

    def previews(self, events: Sequence[OhlcvEvent]) -> None:
        self.previews_seen += len(events)
