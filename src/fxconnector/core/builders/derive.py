"""Derived finals: higher timeframes from final 1m bars only (DESIGN §5.6).

Rules: a bucket of a higher timeframe is derived once its end has passed and every open minute
in it is final or quiet (no minute missing); it is built from final 1m bars with the same
composition rule as previews (`vector.compose`), stamped `complete=true`, `source=derived`,
`event_ts=close_ms`. A bucket with no final 1m bar at all (all quiet) gets no bar: nothing is
invented. Never reads previews.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fxconnector.core.buckets import HasDayGrid, bucket_open_array
from fxconnector.core.builders.vector import BarColumns, compose
from fxconnector.core.coverage import MinuteState
from fxconnector.core.errors import ContractViolation
from fxconnector.core.model.bar import FINAL_SOURCES, OhlcvEvent, Source
from fxconnector.core.time_geom import MINUTE_MS, I64Array, Timeframe


def derive(
    finals_1m: Sequence[OhlcvEvent], tf: Timeframe, calendar: HasDayGrid
) -> list[OhlcvEvent]:
    """Derived finals of `tf` from final 1m bars of one symbol (ascending by open_ms).

    The caller decides which buckets are complete; every bucket touched by the input is built.
    """
    return derive_each(finals_1m, (tf,), calendar).get(tf, [])


def derive_each(
    finals_1m: Sequence[OhlcvEvent], timeframes: Sequence[Timeframe], calendar: HasDayGrid
) -> dict[Timeframe, list[OhlcvEvent]]:
    """`derive` for several timeframes from one read of the 1m columns."""
    if not finals_1m:
        return {}
    columns = finals_columns(finals_1m)
    symbol = finals_1m[0].symbol
    return {tf: derive_columns(columns, symbol, tf, calendar) for tf in timeframes}


def finals_columns(finals_1m: Sequence[OhlcvEvent]) -> BarColumns:
    """The columns of one symbol's final 1m bars (ascending by open_ms): what derivation reads.

    Anything else (a preview, another timeframe or symbol, bars out of order) is a
    ContractViolation."""
    if not finals_1m:
        return BarColumns.from_events([])
    symbol = finals_1m[0].symbol
    previous = -1
    for bar in finals_1m:
        if bar.tf is not Timeframe.M1 or not bar.complete or bar.source not in FINAL_SOURCES:
            raise ContractViolation(f"derive takes final 1m bars only, got {bar.tf} {bar.source}")
        if bar.symbol != symbol or bar.open_ms <= previous:
            raise ContractViolation("derive takes one symbol's 1m finals in ascending order")
        previous = bar.open_ms
    return BarColumns.from_events(list(finals_1m))


def derive_columns(
    columns: BarColumns, symbol: str, tf: Timeframe, calendar: HasDayGrid
) -> list[OhlcvEvent]:
    """`derive` of 1m columns from `finals_columns` (or a `take` of them)."""
    return compose(columns, tf, calendar).events(symbol, tf, complete=True, source=Source.DERIVED)


def complete_buckets(
    from_ms: int,
    states: npt.NDArray[np.int8],
    final_opens: I64Array,
    tf: Timeframe,
    calendar: HasDayGrid,
) -> I64Array:
    """Opens of the `tf` buckets that must have a derived final, ascending.

    `states` classify the minutes of `[from_ms, from_ms + len(states) minutes)` (coverage
    `classify`); `final_opens` are the final 1m opens in that range. A bucket qualifies when it
    lies wholly inside the range, holds at least one final 1m (an all-quiet bucket gets no bar)
    and none of its minutes is missing (closed, final or quiet only).
    """
    if not final_opens.size:
        return np.empty(0, dtype=np.int64)
    opens = np.unique(bucket_open_array(final_opens, tf, calendar))
    lo = (opens - from_ms) // MINUTE_MS
    hi = lo + tf.ms // MINUTE_MS
    inside = (lo >= 0) & (hi <= states.size)
    opens, lo, hi = opens[inside], lo[inside], hi[inside]
    missing = np.concatenate(([0], np.cumsum(states == MinuteState.MISSING)))
    result: I64Array = opens[missing[hi] == missing[lo]]
    return result


@dataclass(frozen=True, slots=True)
class BucketHead:
    """The final 1m bars of a bucket that came before its first live minute, folded once: a
    preview of that bucket is merged with it on every publish (`prepend_head`)."""

    open: float
    high: float
    low: float
    volume: float
    tick_count: int
    last_open_ms: int  # the newest final 1m folded in

    @classmethod
    def fold(cls, finals_1m: Sequence[OhlcvEvent]) -> BucketHead | None:
        """`finals_1m` ascending by open_ms; None when there are none."""
        if not finals_1m:
            return None
        return cls(
            open=finals_1m[0].open,
            high=max(b.high for b in finals_1m),
            low=min(b.low for b in finals_1m),
            volume=sum(b.volume for b in finals_1m),
            tick_count=sum(b.tick_count for b in finals_1m),
            last_open_ms=finals_1m[-1].open_ms,
        )


def prepend_head(preview: OhlcvEvent, head: BucketHead | None) -> OhlcvEvent:
    """A higher-timeframe preview with the final 1m bars of its bucket that came before it.

    Used after a start, when the live builder has seen only part of the current bucket: the
    earlier minutes come from the SSOT (DESIGN §5.3); `head` ends before the preview's first
    live minute.
    """
    if head is None:
        return preview
    return OhlcvEvent(
        symbol=preview.symbol,
        tf=preview.tf,
        open_ms=preview.open_ms,
        close_ms=preview.close_ms,
        open=head.open,
        high=max(preview.high, head.high),
        low=min(preview.low, head.low),
        close=preview.close,
        volume=head.volume + preview.volume,
        tick_count=head.tick_count + preview.tick_count,
        complete=False,
        source=preview.source,
        event_ts=preview.event_ts,
        rev=0,
    )
