"""The JSONL store's memory: a small index per day file and an LRU of whole days bounded in bars
(issue 11 point 5: memory independent of the history's length)."""

from __future__ import annotations

from bisect import insort
from collections import OrderedDict

from fxconnector.core.model.bar import StoredFinal
from fxconnector.core.time_geom import Timeframe


class DaySeries:
    """The latest revision of every key of one symbol/tf day file, open_ms kept sortable."""

    __slots__ = ("by_open", "order", "ordered")

    def __init__(self) -> None:
        self.by_open: dict[int, StoredFinal] = {}
        self.order: list[int] = []
        self.ordered = True

    def put(self, bar: StoredFinal) -> None:
        if bar.open_ms not in self.by_open:
            if self.order and bar.open_ms < self.order[-1]:
                self.ordered = False  # sorted lazily: appends are nearly always the newest bar
            self.order.append(bar.open_ms)
        self.by_open[bar.open_ms] = bar

    def opens(self) -> list[int]:
        if not self.ordered:
            self.order.sort()
            self.ordered = True
        return self.order


class DayInfo:
    """What the index knows of one day file without holding its bars."""

    __slots__ = ("count", "first_open", "last_open")

    def __init__(self, count: int, first_open: int, last_open: int) -> None:
        self.count = count  # distinct keys
        self.first_open = first_open
        self.last_open = last_open


class SeriesIndex:
    """The day files of one symbol/tf: their days ascending and what each holds."""

    __slots__ = ("days", "info")

    def __init__(self) -> None:
        self.days: list[int] = []
        self.info: dict[int, DayInfo] = {}

    def add(self, day: int, info: DayInfo) -> None:
        if not self.days or day > self.days[-1]:
            self.days.append(day)  # the usual case: a new newest day
        else:
            insort(self.days, day)
        self.info[day] = info


DayKey = tuple[str, Timeframe, int]


class DayCache:
    """Whole days of bars in an LRU bounded in bars (the newest day is never evicted)."""

    def __init__(self, max_bars: int) -> None:
        self._max_bars = max_bars
        self._days: OrderedDict[DayKey, DaySeries] = OrderedDict()
        self.bars = 0

    def get(self, key: DayKey) -> DaySeries | None:
        day = self._days.get(key)
        if day is not None:
            self._days.move_to_end(key)
        return day

    def put(self, key: DayKey, day: DaySeries) -> None:
        old = self._days.pop(key, None)
        if old is not None:
            self.bars -= len(old.by_open)
        self._days[key] = day
        self.grew(len(day.by_open))

    def grew(self, count: int) -> None:
        self.bars += count
        while self.bars > self._max_bars and len(self._days) > 1:
            _, dropped = self._days.popitem(last=False)
            self.bars -= len(dropped.by_open)

    def clear(self) -> None:
        self._days.clear()
        self.bars = 0
