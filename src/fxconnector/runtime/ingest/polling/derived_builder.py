"""Derived finals in the running pipeline: which buckets to (re)derive, and when.

Rules: a minute that became final or quiet marks the buckets above it *dirty*. `run(now)`
derives each dirty bucket whose end has passed and whose minutes are all closed, final or quiet
(DESIGN §5.6); a bucket with a missing minute waits until that minute is filled (which marks it
dirty again). Derived bars go through the store (idempotent; a changed bar becomes a revision)
and only new bars and revisions are returned for publishing. The buckets one `run` takes are
derived a span at a time (one store read, one coverage classification, one composition), and
the timeframes share one read where their spans overlap. `hold` defers all derivation (a replay
at full speed derives once at its end); `release` ends it.

Crash-only: which buckets still need deriving is never kept only in memory. `gaps` reads it
back from the store (every bucket whose minutes are all final or quiet but whose derived final
is absent or differs from the aggregation of those minutes); start-up marks those dirty
(`recover`), and the status counts the ones not already waiting here (`incomplete`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fxconnector.core.buckets import bucket_open, bucket_open_array
from fxconnector.core.builders.derive import (
    complete_buckets,
    derive,
    derive_columns,
    derive_each,
    finals_columns,
)
from fxconnector.core.builders.vector import BarColumns
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.coverage import MinuteState, classify
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import DAY_MS, MINUTE_MS, Timeframe
from fxconnector.runtime.store.port import AppendOutcome, FinalStore
from fxconnector.runtime.store.rules import same_bar

REDERIVED = "rederived from revised 1m"
#: The fixed work of one bucket (its share of a span's store read, coverage and composition,
#: and its append) in minutes of 1m read; buckets are derived a span at a time, so a 5m bucket
#: costs about as much as 13 minutes of a 1d one. Slices are bounded in these.
BUCKET_COST_MINUTES = 8


class DerivedBuilder:
    """Tracks dirty higher-timeframe buckets and derives them from the SSOT's final 1m."""

    def __init__(
        self,
        store: FinalStore,
        calendars: Mapping[str, TradingCalendar],
        timeframes: Sequence[Timeframe],
    ) -> None:
        self._store = store
        self._calendars = calendars
        self._timeframes = tuple(tf for tf in timeframes if tf is not Timeframe.M1)
        self._dirty: dict[tuple[str, Timeframe], set[int]] = {}
        self.waiting_on_missing = 0
        self.more_ready = False  # the last `run` stopped at its budget with ready buckets left
        self._held = False

    def hold(self) -> None:
        """Derive nothing until `release`; buckets still become dirty. A batch job (a replay at
        full speed) derives every bucket once at its end: one store read per timeframe and
        span, not one per slice."""
        self._held = True

    def release(self) -> None:
        """Derive again from the next `run`."""
        self._held = False

    def touch(self, symbol: str, from_ms: int, to_ms: int) -> None:
        """Minutes in `[from_ms, to_ms)` changed state: their buckets need a look."""
        if to_ms <= from_ms or not self._timeframes:
            return
        start = from_ms - from_ms % MINUTE_MS
        calendar = self._calendars[symbol]
        minutes: npt.NDArray[np.int64] | None = None
        for tf in self._timeframes:
            dirty = self._dirty.setdefault((symbol, tf), set())
            if to_ms - start <= tf.ms:
                # A range no longer than a bucket touches at most the buckets of its two ends.
                dirty.add(bucket_open(start, tf, calendar))
                dirty.add(bucket_open(to_ms - 1, tf, calendar))
                continue
            if not tf.session_aligned:
                # Epoch-aligned buckets tile time: every tf.ms from the first one's open.
                first = bucket_open(start, tf, calendar)
                dirty.update(range(first, bucket_open(to_ms - 1, tf, calendar) + 1, tf.ms))
                continue
            if minutes is None:
                minutes = np.arange(start, to_ms, MINUTE_MS, dtype=np.int64)
            dirty.update(np.unique(bucket_open_array(minutes, tf, calendar)).tolist())

    def pending(self, now_ms: int | None = None) -> int:
        """Buckets waiting to be looked at (whose end has passed, when `now_ms` is given)."""
        if now_ms is None:
            return sum(len(opens) for opens in self._dirty.values())
        return sum(
            1 for (_, tf), opens in self._dirty.items() for o in opens if o + tf.ms <= now_ms
        )

    def run(
        self, now_ms: int, max_buckets: int | None = None, max_minutes: int | None = None
    ) -> list[OhlcvEvent]:
        """Derive ready dirty buckets (at most `max_buckets`, and at most `max_minutes` of work
        counted as each bucket's minutes plus BUCKET_COST_MINUTES: one slice of bounded work;
        the rest stay dirty for the next call, and `more_ready` says so); return new and
        revised derived bars.

        The buckets a call takes are derived a span at a time: one store read of the span's
        1m finals, one coverage classification and one composition for all its buckets.
        """
        published: list[OhlcvEvent] = []
        waiting = 0
        budget = max_buckets if max_buckets is not None else -1
        minutes_left = max_minutes if max_minutes is not None else -1
        self.more_ready = False
        if self._held:
            return published
        taken: dict[tuple[str, Timeframe], list[int]] = {}
        for (symbol, tf), opens in self._dirty.items():
            chosen: list[int] = []
            for open_ms in sorted(o for o in opens if o + tf.ms <= now_ms):
                if budget == 0 or minutes_left == 0:
                    self.more_ready = True
                    break
                budget -= 1
                if max_minutes is not None:  # a bucket bigger than what is left still runs
                    cost = tf.ms // MINUTE_MS + BUCKET_COST_MINUTES
                    minutes_left = max(0, minutes_left - cost)
                chosen.append(open_ms)
            if chosen:
                opens.difference_update(chosen)
                taken[(symbol, tf)] = chosen
        reads = self._reads(taken)
        for (symbol, tf), chosen in taken.items():
            for span in _spans(chosen, tf):
                minutes = reads.get(symbol)
                if minutes is None or not minutes.covers(span[0], span[-1] + tf.ms):
                    minutes = self._read(symbol, span[0], span[-1] + tf.ms)
                bars, missing = _derive_span(minutes, tf, span, self._calendars[symbol])
                waiting += missing
                if not bars:
                    continue
                for result in self._store.append(bars, reason=REDERIVED):
                    if result.outcome is not AppendOutcome.DUPLICATE:
                        published.append(result.stored)
        self._dirty = {key: opens for key, opens in self._dirty.items() if opens}
        self.waiting_on_missing = waiting
        return published

    def _reads(self, taken: dict[tuple[str, Timeframe], list[int]]) -> dict[str, _Minutes]:
        """One read per symbol of the 1m under every span taken, when that reads fewer minutes
        than a read per span (the timeframes' spans overlap): the timeframes of a slice then
        share one read instead of reading the same minutes once each."""
        bounds: dict[str, list[tuple[int, int]]] = {}
        for (symbol, tf), chosen in taken.items():
            for span in _spans(chosen, tf):
                bounds.setdefault(symbol, []).append((span[0], span[-1] + tf.ms))
        reads = {}
        for symbol, spans in bounds.items():
            if len(spans) < 2:
                continue
            start, end = min(a for a, _ in spans), max(b for _, b in spans)
            if end - start < sum(b - a for a, b in spans):
                reads[symbol] = self._read(symbol, start, end)
        return reads

    def _read(self, symbol: str, start: int, end: int) -> _Minutes:
        """The final 1m and the minute states of `[start, end)`, read from the store."""
        # Stored finals are events (a subclass): derive reads them as they are.
        finals: list[OhlcvEvent] = list(self._store.bars(symbol, Timeframe.M1, start, end))
        columns = finals_columns(finals)
        fetched = self._store.fetched_intervals(symbol, start, end)
        states = classify(start, end, self._calendars[symbol], columns.open_ms, fetched)
        return _Minutes(symbol, start, end, columns, states)

    def gaps(self, symbol: str, from_ms: int, to_ms: int) -> dict[Timeframe, list[int]]:
        """Buckets overlapping `[from_ms, to_ms)` and ending by `to_ms` whose minutes are all
        closed, final or quiet, with at least one final 1m, but whose stored derived final is
        absent or differs from `derive` of those minutes (read from the store)."""
        if not self._timeframes or to_ms <= from_ms:
            return {}
        calendar = self._calendars[symbol]
        start = min(
            bucket_open(from_ms - from_ms % MINUTE_MS, tf, calendar) for tf in self._timeframes
        )
        end = to_ms - to_ms % MINUTE_MS
        finals = [bar.event() for bar in self._store.bars(symbol, Timeframe.M1, start, end)]
        if not finals:
            return {}
        opens = np.fromiter((b.open_ms for b in finals), np.int64, len(finals))
        fetched = self._store.fetched_intervals(symbol, start, end)
        states = classify(start, end, calendar, opens, fetched)
        found: dict[Timeframe, list[int]] = {}
        built_by_tf = derive_each(finals, self._timeframes, calendar)
        for tf in self._timeframes:
            wanted = complete_buckets(start, states, opens, tf, calendar)
            wanted = wanted[wanted + tf.ms > from_ms]
            if not wanted.size:
                continue
            stored = {b.open_ms: b for b in self._store.bars(symbol, tf, start, end)}
            built = {b.open_ms: b for b in built_by_tf[tf]}
            bad = []
            for open_ms in wanted.tolist():
                have = stored.get(open_ms)
                if have is not None and same_bar(have, built[open_ms]):
                    continue
                if have is not None:
                    # Confirm on the bucket alone, exactly as `run` builds it.
                    lo = bisect_left(finals, open_ms, key=lambda b: b.open_ms)
                    hi = bisect_left(finals, open_ms + tf.ms, key=lambda b: b.open_ms)
                    (alone,) = derive(finals[lo:hi], tf, calendar)
                    if same_bar(have, alone):
                        continue
                bad.append(open_ms)
            if bad:
                found[tf] = bad
        return found

    def recover(self, symbol: str, from_ms: int, to_ms: int) -> int:
        """Mark the store's `gaps` over `[from_ms, to_ms)` dirty (start-up is recovery);
        return how many buckets were marked. `run` derives them."""
        marked = 0
        for tf, opens in self.gaps(symbol, from_ms, to_ms).items():
            self._dirty.setdefault((symbol, tf), set()).update(opens)
            marked += len(opens)
        return marked

    def incomplete(self, symbol: str, from_ms: int, to_ms: int) -> int:
        """`gaps` that are not already waiting here to be derived (for status)."""
        return sum(
            1
            for tf, opens in self.gaps(symbol, from_ms, to_ms).items()
            for open_ms in opens
            if open_ms not in self._dirty.get((symbol, tf), ())
        )


def _spans(opens: list[int], tf: Timeframe) -> list[list[int]]:
    """Ascending bucket opens cut where two buckets are more than a day apart: each span is
    read from the store at once, without reading long stretches between distant buckets."""
    spans: list[list[int]] = [[opens[0]]]
    for open_ms in opens[1:]:
        if open_ms - (spans[-1][-1] + tf.ms) > DAY_MS:
            spans.append([open_ms])
        else:
            spans[-1].append(open_ms)
    return spans


@dataclass(frozen=True, slots=True)
class _Minutes:
    """One read of a symbol's 1m: the finals' columns and every minute's state."""

    symbol: str
    start: int
    end: int
    columns: BarColumns
    states: npt.NDArray[np.int8]

    def covers(self, start: int, end: int) -> bool:
        return self.start <= start and end <= self.end


def _derive_span(
    minutes: _Minutes, tf: Timeframe, opens: list[int], calendar: TradingCalendar
) -> tuple[list[OhlcvEvent], int]:
    """Derived bars of the buckets at `opens` (ascending, one span inside `minutes`) whose
    minutes are all closed, final or quiet and hold a final 1m; and how many wait on a
    missing minute."""
    start, end = opens[0], opens[-1] + tf.ms
    all_opens = minutes.columns.open_ms
    first, last = np.searchsorted(all_opens, [start, end])
    final_opens = all_opens[first:last]
    offset = (start - minutes.start) // MINUTE_MS
    states = minutes.states[offset : offset + (end - start) // MINUTE_MS]
    missing = np.concatenate(([0], np.cumsum(states == MinuteState.MISSING)))
    bucket_opens = np.asarray(opens, dtype=np.int64)
    lo = (bucket_opens - start) // MINUTE_MS
    hi = lo + tf.ms // MINUTE_MS
    complete = missing[hi] == missing[lo]
    held = (
        np.searchsorted(final_opens, bucket_opens + tf.ms)
        - np.searchsorted(final_opens, bucket_opens)
    ) > 0
    waiting = int(np.count_nonzero(~complete))
    wanted = bucket_opens[complete & held]  # an all-quiet bucket: no bar is invented
    if not wanted.size:
        return [], waiting
    # The finals of the wanted buckets only, each derived exactly as on its own.
    keep = np.flatnonzero(np.isin(bucket_open_array(final_opens, tf, calendar), wanted))
    chosen = minutes.columns.take(keep + first)
    return derive_columns(chosen, minutes.symbol, tf, calendar), waiting
