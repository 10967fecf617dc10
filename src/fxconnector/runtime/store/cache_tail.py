"""The tail cache: the last `window` finals of every symbol/tf in memory (DESIGN §6).

Rules:
- Holds the latest revision per key, ordered by open_ms; a revision replaces its key in place, an
  older revision than the one held is ignored, a bar older than a full window is not kept.
- Rebuilt from the SSOT on start (`rebuild`), then fed every stored final (`apply`) by the
  writer after the store accepted it; it never reads or writes the store otherwise.
- Pure memory, single-threaded like the writer that feeds it.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, insort
from collections import deque

from fxconnector.core.errors import ContractViolation
from fxconnector.core.model.bar import StoredFinal
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.store.port import FinalStore


class _Window:
    __slots__ = ("by_open", "opens")

    def __init__(self) -> None:
        self.opens: list[int] = []
        self.by_open: dict[int, StoredFinal] = {}


class TailCache:
    """A rolling window of the last `window` finals per (symbol, tf)."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ContractViolation(f"tail cache window must be >= 1, got {window}")
        self.window = window
        self._series: dict[tuple[str, Timeframe], _Window] = {}

    def rebuild(self, store: FinalStore) -> None:
        """Forget everything and load the last `window` finals of every series of `store`."""
        self._series = {}
        for symbol, tf in store.series():
            for stored in last_finals(store, symbol, tf, self.window):
                self.apply(stored)

    def apply(self, stored: StoredFinal) -> None:
        """Insert `stored`, or replace its key when it is the same or a newer revision."""
        key = (stored.symbol, stored.tf)
        window = self._series.get(key)
        if window is None:
            window = self._series[key] = _Window()
        open_ms = stored.open_ms
        held = window.by_open.get(open_ms)
        if held is not None:
            if stored.rev >= held.rev:
                window.by_open[open_ms] = stored
            return
        opens = window.opens
        if len(opens) >= self.window and open_ms < opens[0]:
            return  # older than everything in a full window: it would be dropped at once
        if not opens or open_ms > opens[-1]:
            opens.append(open_ms)  # the usual case: the newest bar
        else:
            insort(opens, open_ms)
        window.by_open[open_ms] = stored
        if len(opens) > self.window:
            del window.by_open[opens.pop(0)]

    def series(self) -> list[tuple[str, Timeframe]]:
        """Every (symbol, tf) the cache holds bars of, sorted."""
        return sorted(key for key, window in self._series.items() if window.opens)

    def tail(
        self,
        symbol: str,
        tf: Timeframe,
        limit: int,
        from_ms: int | None = None,
        to_ms: int | None = None,
    ) -> list[StoredFinal]:
        """The newest `limit` finals with `from_ms <= open_ms < to_ms`, ascending by open_ms."""
        window = self._series.get((symbol, tf))
        if window is None or limit <= 0:
            return []
        opens = window.opens
        low = 0 if from_ms is None else bisect_left(opens, from_ms)
        high = len(opens) if to_ms is None else bisect_left(opens, to_ms)
        low = max(low, high - limit)
        return [window.by_open[open_ms] for open_ms in opens[low:high]]


def last_finals(
    store: FinalStore, symbol: str, tf: Timeframe, count: int, to_ms: int | None = None
) -> deque[StoredFinal]:
    """The newest `count` finals of one series (opening before `to_ms`), reading back in
    widening spans.

    Reading the whole series would cost a year of 1m bars per start; closed hours and weekends
    mean `count` bars span more than `count * tf_ms`, so the span doubles until it is enough.
    """
    last = store.last_open_ms(symbol, tf)
    found: deque[StoredFinal] = deque(maxlen=max(count, 0))
    if last is None or count <= 0:
        return found
    end = last + 1 if to_ms is None else min(to_ms, last + 1)
    span = 2 * count * tf.ms
    while True:
        from_ms = max(0, end - span)
        found.clear()
        found.extend(store.bars(symbol, tf, from_ms, end))
        if len(found) >= count or from_ms == 0:
            return found
        span *= 2


def first_finals(
    store: FinalStore, symbol: str, tf: Timeframe, from_ms: int, to_ms: int | None, count: int
) -> list[StoredFinal]:
    """The first `count` finals with `from_ms <= open_ms < to_ms`; reads no further than it
    needs (the store reads lazily, a day at a time)."""
    return list(itertools.islice(store.bars(symbol, tf, from_ms, to_ms), max(count, 0)))
