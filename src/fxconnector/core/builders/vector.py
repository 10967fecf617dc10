"""The vectorised builder: numpy columns of ticks in, bars out, for replay and backfill.

Rules: same bars as the live builder on the same ticks (see `spec.py`), bit for bit:
- the late-tick rail drops a tick whose minute is older than the newest minute seen before it
  (arrival order), so accepted minutes never go backwards;
- within a minute, OHLC follows tick time with a stable sort (ties keep arrival order);
- 1m size volumes are summed in arrival order and higher timeframes are composed from 1m bars
  in minute order (`np.bincount` adds sequentially), the order the live builder adds them in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fxconnector.core.buckets import HasDayGrid, bucket_open_array
from fxconnector.core.builders.spec import BarSpec, OpenMode, PriceSide, VolumeMode
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.tick import TickBatch
from fxconnector.core.time_geom import MINUTE_MS, I64Array, Timeframe, floor_array

F64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class BarColumns:
    """Bars of one symbol and timeframe as columns, ascending by open_ms.

    `volume` is int64 (tick counts) in `ticks` mode and float64 in `size` mode; `last_ts` is the
    time of each bar's latest tick (a preview's event_ts).
    """

    open_ms: I64Array
    open: F64Array
    high: F64Array
    low: F64Array
    close: F64Array
    volume: npt.NDArray[np.int64] | F64Array
    tick_count: I64Array
    last_ts: I64Array

    def __len__(self) -> int:
        return int(self.open_ms.size)

    def events(
        self, symbol: str, tf: Timeframe, *, complete: bool, source: Source
    ) -> list[OhlcvEvent]:
        """The bars as events (final: event_ts = close_ms; preview: event_ts = last tick)."""
        size = tf.ms
        stamps = (self.open_ms + (size - 1)) if complete else self.last_ts
        return [
            OhlcvEvent(symbol, tf, o_ms, o_ms + size - 1, o, h, lo, c, v, n, complete, source, e, 0)
            for o_ms, o, h, lo, c, v, n, e in zip(
                self.open_ms.tolist(),
                self.open.tolist(),
                self.high.tolist(),
                self.low.tolist(),
                self.close.tolist(),
                self.volume.tolist(),
                self.tick_count.tolist(),
                stamps.tolist(),
                strict=True,
            )
        ]

    def span(self, start: int, stop: int) -> BarColumns:
        """Bars `[start, stop)`, as views (no copies)."""
        return self.take(slice(start, stop))

    def take(self, index: I64Array | slice) -> BarColumns:
        """The bars at `index` (ascending positions, or a slice: views), as new columns."""
        return BarColumns(
            open_ms=self.open_ms[index],
            open=self.open[index],
            high=self.high[index],
            low=self.low[index],
            close=self.close[index],
            volume=self.volume[index],
            tick_count=self.tick_count[index],
            last_ts=self.last_ts[index],
        )

    @staticmethod
    def from_events(events: list[OhlcvEvent]) -> BarColumns:
        """Columns of events of one symbol and timeframe (ascending open_ms expected)."""
        as_int = all(isinstance(e.volume, int) for e in events)
        return BarColumns(
            open_ms=np.fromiter((e.open_ms for e in events), np.int64, len(events)),
            open=np.fromiter((e.open for e in events), np.float64, len(events)),
            high=np.fromiter((e.high for e in events), np.float64, len(events)),
            low=np.fromiter((e.low for e in events), np.float64, len(events)),
            close=np.fromiter((e.close for e in events), np.float64, len(events)),
            volume=(
                np.fromiter((int(e.volume) for e in events), np.int64, len(events))
                if as_int
                else np.fromiter((e.volume for e in events), np.float64, len(events))
            ),
            tick_count=np.fromiter((e.tick_count for e in events), np.int64, len(events)),
            last_ts=np.fromiter((e.event_ts for e in events), np.int64, len(events)),
        )


def side_prices(batch: TickBatch, side: PriceSide) -> F64Array:
    """The price column a BarSpec builds from."""
    if side is PriceSide.BID:
        return batch.bid
    if side is PriceSide.ASK:
        return batch.ask
    return (batch.bid + batch.ask) / 2.0


def side_sizes(batch: TickBatch, side: PriceSide) -> F64Array:
    """The size column a BarSpec sums in `size` mode (zeros when the source has none)."""
    if batch.bid_volume is None or batch.ask_volume is None:
        return np.zeros(len(batch), dtype=np.float64)
    if side is PriceSide.BID:
        return batch.bid_volume
    if side is PriceSide.ASK:
        return batch.ask_volume
    return (batch.bid_volume + batch.ask_volume) / 2.0


def accepted_by_rail(ts_ms: I64Array, floor_minute_ms: int | None = None) -> BoolArray:
    """True for ticks the late-tick rail keeps: minute >= every earlier tick's minute.

    `floor_minute_ms` is the current minute of a builder that already saw earlier ticks.
    """
    if ts_ms.size == 0:
        return np.zeros(0, dtype=np.bool_)
    if _ascending(ts_ms) and (floor_minute_ms is None or ts_ms[0] >= floor_minute_ms):
        return np.ones(ts_ms.size, dtype=np.bool_)  # in time order nothing is late
    minutes = floor_array(ts_ms, MINUTE_MS)
    running = np.maximum.accumulate(minutes)
    if floor_minute_ms is not None:
        running = np.maximum(running, floor_minute_ms)
    return minutes >= running


def ticks_to_1m(
    ts_ms: I64Array, prices: F64Array, sizes: F64Array | None, open_mode: OpenMode
) -> BarColumns:
    """1m bars of ticks already through the rail (minutes non-decreasing in arrival order).

    `sizes` None means `ticks` volume mode.
    """
    count = int(ts_ms.size)
    if count == 0:
        return _empty(sizes is None)
    if _ascending(ts_ms):
        # Recorded streams are usually in time order: no sort, minute edges by binary search.
        starts, minute_opens = _edges_sorted(ts_ms)
        sorted_ts, sorted_prices = ts_ms, prices
    else:
        minutes = floor_array(ts_ms, MINUTE_MS)
        starts = np.flatnonzero(np.concatenate(([True], minutes[1:] != minutes[:-1])))
        minute_opens = minutes[starts]
        order = np.argsort(ts_ms, kind="stable")
        sorted_ts, sorted_prices = ts_ms[order], prices[order]
    tick_count = np.diff(np.append(starts, count)).astype(np.int64)
    ends = np.append(starts[1:], count) - 1
    volume: npt.NDArray[np.int64] | F64Array
    if sizes is None:
        volume = tick_count
    else:
        # Groups are the same runs in arrival and time order (the rail keeps minutes monotone);
        # bincount adds in arrival order, as the live builder does.
        group = np.repeat(np.arange(starts.size), tick_count)
        volume = np.bincount(group, weights=sizes, minlength=starts.size)
    bars = BarColumns(
        open_ms=minute_opens,
        open=sorted_prices[starts],
        high=np.maximum.reduceat(sorted_prices, starts),
        low=np.minimum.reduceat(sorted_prices, starts),
        close=sorted_prices[ends],
        volume=volume,
        tick_count=tick_count,
        last_ts=sorted_ts[ends],
    )
    return _previous_close(bars) if open_mode is OpenMode.PREVIOUS_CLOSE else bars


def _ascending(ts_ms: I64Array) -> bool:
    return ts_ms.size < 2 or bool(np.all(ts_ms[1:] >= ts_ms[:-1]))


def _edges_sorted(ts_ms: I64Array) -> tuple[I64Array, I64Array]:
    """Start index and open of each non-empty minute of ascending stamps."""
    first = int(ts_ms[0]) - int(ts_ms[0]) % MINUTE_MS
    span = (int(ts_ms[-1]) - first) // MINUTE_MS + 1
    if span <= ts_ms.size:
        grid = np.arange(first, first + span * MINUTE_MS, MINUTE_MS, dtype=np.int64)
        index = np.searchsorted(ts_ms, grid, side="left")
        filled = np.diff(np.append(index, ts_ms.size)) > 0
        return index[filled], grid[filled]
    minutes = floor_array(ts_ms, MINUTE_MS)
    starts = np.flatnonzero(np.concatenate(([True], minutes[1:] != minutes[:-1])))
    return starts, minutes[starts]


def compose(bars_1m: BarColumns, tf: Timeframe, calendar: HasDayGrid) -> BarColumns:
    """Bars of `tf` composed from 1m bars (ascending): the rule for previews and finals alike."""
    if tf is Timeframe.M1 or len(bars_1m) == 0:
        return bars_1m
    opens_tf = bucket_open_array(bars_1m.open_ms, tf, calendar)
    starts = np.flatnonzero(np.append(True, opens_tf[1:] != opens_tf[:-1]))
    ends = np.append(starts[1:], len(bars_1m)) - 1
    tick_count = np.add.reduceat(bars_1m.tick_count, starts)
    volume: npt.NDArray[np.int64] | F64Array
    if bars_1m.volume is bars_1m.tick_count:
        volume = tick_count  # `ticks` volume mode: the same column
    elif bars_1m.volume.dtype == np.int64:
        volume = np.add.reduceat(bars_1m.volume, starts)
    else:
        # Sequential sums in minute order (bincount), as the live builder folds minutes.
        runs = np.diff(np.append(starts, len(bars_1m)))
        group = np.repeat(np.arange(starts.size), runs)
        volume = np.bincount(group, weights=bars_1m.volume, minlength=starts.size)
    return BarColumns(
        open_ms=opens_tf[starts],
        open=bars_1m.open[starts],
        high=np.maximum.reduceat(bars_1m.high, starts),
        low=np.minimum.reduceat(bars_1m.low, starts),
        close=bars_1m.close[ends],
        volume=volume,
        tick_count=tick_count,
        last_ts=bars_1m.last_ts[ends],
    )


#: For each timeframe, the finer one whose buckets nest in it (DESIGN §4: day starts fall on
#: whole UTC hours, so 1h nests in 4h and 4h in 1d; the calendar loader refuses anything else).
_NESTS_IN: dict[Timeframe, Timeframe] = {
    Timeframe.M3: Timeframe.M1,
    Timeframe.M5: Timeframe.M1,
    Timeframe.M15: Timeframe.M5,
    Timeframe.M30: Timeframe.M15,
    Timeframe.H1: Timeframe.M30,
    Timeframe.H4: Timeframe.H1,
    Timeframe.D1: Timeframe.H4,
}


def compose_all(
    bars_1m: BarColumns, timeframes: tuple[Timeframe, ...], calendar: HasDayGrid
) -> dict[Timeframe, BarColumns]:
    """`compose` for several timeframes, each from the finest composed one that nests in it.

    First, last, max, min and integer sums are the same whatever the grouping, so this equals
    composing each from 1m; float volumes are summed from 1m directly to keep their order.
    """
    done: dict[Timeframe, BarColumns] = {Timeframe.M1: bars_1m}
    float_volume = bars_1m.volume.dtype != np.int64
    for tf in sorted(set(timeframes) | {Timeframe.M1}, key=lambda t: t.ms):
        if tf in done:
            continue
        source = _NESTS_IN[tf]
        while source not in done:
            source = _NESTS_IN[source]
        composed = compose(done[source], tf, calendar)
        if float_volume and source is not Timeframe.M1:
            composed = _with_volume(composed, compose(bars_1m, tf, calendar).volume)
        done[tf] = composed
    return {tf: done[tf] for tf in timeframes}


def _with_volume(bars: BarColumns, volume: F64Array | npt.NDArray[np.int64]) -> BarColumns:
    return BarColumns(
        bars.open_ms,
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        volume,
        bars.tick_count,
        bars.last_ts,
    )


def build(
    batch: TickBatch,
    timeframes: tuple[Timeframe, ...],
    calendar: HasDayGrid,
    spec: BarSpec,
    *,
    floor_minute_ms: int | None = None,
) -> tuple[dict[Timeframe, BarColumns], int]:
    """Bars of every timeframe from ticks that already passed validation.

    Returns the bars and how many ticks the late-tick rail dropped.
    """
    ts = batch.ts_ms
    prices = side_prices(batch, spec.price)
    sizes = side_sizes(batch, spec.price) if spec.volume is VolumeMode.SIZE else None
    late = 0
    if not (
        _ascending(ts) and (floor_minute_ms is None or ts.size == 0 or ts[0] >= floor_minute_ms)
    ):
        keep = accepted_by_rail(ts, floor_minute_ms)
        late = int(keep.size - np.count_nonzero(keep))
        if late:
            ts, prices = ts[keep], prices[keep]
            sizes = None if sizes is None else sizes[keep]
    bars_1m = ticks_to_1m(ts, prices, sizes, spec.open_mode)
    return compose_all(bars_1m, timeframes, calendar), late


def _previous_close(bars: BarColumns) -> BarColumns:
    opens = bars.open.copy()
    opens[1:] = bars.close[:-1]
    return BarColumns(
        open_ms=bars.open_ms,
        open=opens,
        high=np.maximum(bars.high, opens),
        low=np.minimum(bars.low, opens),
        close=bars.close,
        volume=bars.volume,
        tick_count=bars.tick_count,
        last_ts=bars.last_ts,
    )


def _empty(tick_volume: bool) -> BarColumns:
    ints = np.zeros(0, dtype=np.int64)
    floats = np.zeros(0, dtype=np.float64)
    return BarColumns(
        ints, floats, floats, floats, floats, ints if tick_volume else floats, ints, ints
    )
