"""Open zones waiting for the bar that ends them (mitigation, sweep), found in O(log n).

Rules: a bull zone ends when a bar's low reaches its trigger from above, a bear zone when a bar's
high reaches its trigger from below; `inclusive` says whether touching the trigger counts. The
zones a bar ends are returned in canonical order, so ties never depend on insertion order.
"""

from __future__ import annotations

import heapq

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.smc import Direction, SmcHint


class ZoneBook:
    """Open zones of one kind: two heaps keyed by their trigger price."""

    __slots__ = ("_bear", "_bull", "_inclusive")

    def __init__(self, *, inclusive: bool) -> None:
        self._inclusive = inclusive
        # bull: max-heap on the trigger (stored negated); bear: min-heap on the trigger.
        self._bull: list[tuple[float, int, str, SmcHint]] = []
        self._bear: list[tuple[float, int, str, SmcHint]] = []

    def clone(self) -> ZoneBook:
        other = ZoneBook(inclusive=self._inclusive)
        other._bull = list(self._bull)
        other._bear = list(self._bear)
        return other

    def __len__(self) -> int:
        return len(self._bull) + len(self._bear)

    def hints(self) -> list[SmcHint]:
        """The open zones (unordered)."""
        return [entry[3] for entry in (*self._bull, *self._bear)]

    def add(self, hint: SmcHint, trigger: float) -> None:
        """Keep `hint` open until a bar reaches `trigger` (its far edge)."""
        if hint.direction is Direction.BULL:
            heapq.heappush(self._bull, (-trigger, hint.anchor_ts, hint.id, hint))
        else:
            heapq.heappush(self._bear, (trigger, hint.anchor_ts, hint.id, hint))

    def ended_by(self, bar: OhlcvEvent) -> list[SmcHint]:
        """Remove and return the zones `bar` reaches, in (anchor_ts, id) order."""
        ended: list[SmcHint] = []
        bull, bear = self._bull, self._bear
        low, high = bar.low, bar.high
        if self._inclusive:
            while bull and low <= -bull[0][0]:
                ended.append(heapq.heappop(bull)[3])
            while bear and high >= bear[0][0]:
                ended.append(heapq.heappop(bear)[3])
        else:
            while bull and low < -bull[0][0]:
                ended.append(heapq.heappop(bull)[3])
            while bear and high > bear[0][0]:
                ended.append(heapq.heappop(bear)[3])
        if len(ended) > 1:
            ended.sort(key=lambda h: (h.anchor_ts, h.id))
        return ended
