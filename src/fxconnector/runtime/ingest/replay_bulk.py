"""A replay at full speed into a symbol the store has never held: columns in, columns stored.

Rules (issue 12, replay end to end):
- It applies when nothing of the symbol is in the store (no bar of any timeframe, no coverage):
  then the pipeline's per-bar work (asking history a window at a time, comparing with stored
  bars, making revisions) has nothing to do. The replay broker's history is the 1m aggregation
  of the accepted ticks (DESIGN §10); here it is built once, from the tick columns.
- The 1m are checked and stored a UTC day at a time (`FinalStore.append_columns`), each day
  with its coverage line and its finals published; the store is flushed and the flush
  acknowledged at least every `ack_interval_s` of wall time, and progress reported with it.
- The higher timeframes are composed from the 1m columns once every minute is stored, for the
  buckets `DerivedBuilder` derives: wholly inside the replay's range, each minute final, quiet
  or closed, at least one final 1m (`derive.complete_buckets`), with the same composition.
- Same output as the pipeline's minute drive: the day files byte for byte, the same finals
  published per series, the same summary. Coverage differs only in its lines: one per UTC day
  here, one per hour of tick time there (the same intervals once merged).
- Anything the pipeline would treat otherwise falls back to it (`plan` returns None): a store
  that holds the symbol, a range start that is not a whole minute, a bar outside the range or
  in a minute the calendar calls closed (the pipeline refuses those, with errors to report).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fxconnector.core.buckets import bucket_open
from fxconnector.core.builders.derive import complete_buckets
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.builders.vector import BarColumns, build, compose
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.coverage import classify
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.tick import TickBatch
from fxconnector.core.time_geom import DAY_MS, MINUTE_MS, RANGE_END_MS, RANGE_START_MS, Timeframe
from fxconnector.runtime.publish.sink import EventSink
from fxconnector.runtime.store.port import FinalStore

Progress = Callable[[int, int], None]  # (ticks done, ticks total)
Ack = Callable[[int], None]  # stream time through which everything is durable


@dataclass(frozen=True, slots=True)
class BulkPlan:
    """What a bulk replay stores: the 1m of the accepted ticks over `[start_ms, final_ms)`."""

    m1: BarColumns
    ticks: int  # accepted by the rails, late ones included
    late_ticks: int
    start_ms: int
    final_ms: int


@dataclass(slots=True)
class BulkResult:
    finals: dict[str, int]
    derived: list[OhlcvEvent]


def plan(
    good: TickBatch,
    store: FinalStore,
    calendar: TradingCalendar,
    spec: BarSpec,
    start_ms: int,
    end_ms: int,
) -> BulkPlan | None:
    """The bulk replay of `good` (ticks past the rails) over `[start_ms, end_ms)`, or None
    where the pipeline must do it."""
    symbol = good.symbol
    if not len(good) or start_ms % MINUTE_MS:
        return None
    if any(held == symbol for held, _ in store.series()):
        return None
    if store.fetched_intervals(symbol, RANGE_START_MS, RANGE_END_MS):
        return None
    columns, late = build(good, (Timeframe.M1,), calendar, spec)
    m1 = columns[Timeframe.M1]
    # The minute drive's last advance: the range's end or the minute after the latest tick's.
    final_ms = max(end_ms, int(good.ts_ms.max()) // MINUTE_MS * MINUTE_MS + MINUTE_MS)
    opens = m1.open_ms
    if opens.size and (
        int(opens[0]) < start_ms or not calendar.is_open_array(opens).all()
    ):  # the pipeline refuses these bars, one error each: its report is the one to give
        return None
    return BulkPlan(m1, len(good), late, start_ms, final_ms)


def run_bulk(
    job: BulkPlan,
    symbol: str,
    *,
    calendar: TradingCalendar,
    timeframes: tuple[Timeframe, ...],
    store: FinalStore,
    sink: EventSink,
    progress: Progress | None,
    ack: Ack | None,
    ack_interval_s: float,
) -> BulkResult:
    """Store the plan's 1m a UTC day at a time, then every higher timeframe; flush, publish
    the derived finals, and acknowledge the end."""
    m1, start, final_ms = job.m1, job.start_ms, job.final_ms
    total = job.ticks
    opens = m1.open_ms
    days = np.unique(opens // DAY_MS * DAY_MS)
    cuts = [start, *days[days > start].tolist(), final_ms]
    last_ack = time.monotonic()
    unpublished: list[OhlcvEvent] = []  # finals are published once durable (the sink's rule)
    stored_1m = 0
    for a, b in itertools.pairwise(cuts):
        lo, hi = np.searchsorted(opens, [a, b]).tolist()
        if hi > lo:
            bars = store.append_columns(symbol, Timeframe.M1, m1.span(lo, hi), Source.HISTORY)
            stored_1m += len(bars)
            unpublished.extend(bars)
        store.mark_fetched(symbol, a, b)
        if time.monotonic() - last_ack >= ack_interval_s:
            store.flush()
            last_ack = time.monotonic()
            sink.finals(unpublished)
            unpublished = []
            if ack is not None:
                ack(b)
            if progress is not None:
                progress(int(m1.tick_count[:hi].sum()), total)
    derived: list[OhlcvEvent] = []
    counts = {Timeframe.M1.value: stored_1m} if stored_1m else {}
    higher = [tf for tf in timeframes if tf is not Timeframe.M1]
    if opens.size and higher:
        first = min(bucket_open(int(opens[0]), tf, calendar) for tf in higher)
        states = classify(first, final_ms, calendar, opens, [(start, final_ms)])
        for tf in higher:
            ready = complete_buckets(first, states, opens, tf, calendar)
            composed = compose(m1, tf, calendar)
            keep = np.flatnonzero(np.isin(composed.open_ms, ready))
            if keep.size:
                derived.extend(
                    store.append_columns(symbol, tf, composed.take(keep), Source.DERIVED)
                )
    store.flush()
    unpublished.extend(derived)
    if unpublished:
        sink.finals(unpublished)
    if ack is not None:
        ack(final_ms)
    if progress is not None:
        progress(total, total)
    return BulkResult(counts, derived)
