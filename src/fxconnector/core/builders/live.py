"""The live builder: ticks in, preview bars out, one tick at a time.

Rules (see `spec.py` for the bar arithmetic it shares with the vectorised builder):
- Only the current 1m bar is touched per tick; higher timeframes keep a partial bar of their
  closed minutes and are composed with the current minute when a preview is asked for.
- Late-tick rail: a tick whose minute is older than the current minute (or than a minute already
  closed by `close_until`) is dropped and counted, never applied. Out-of-order ticks inside the
  current minute are applied by tick time.
- `update` and `close_until` return the preview bars that just closed (still `complete=false`:
  finals come only from broker history). Pure: the caller owns time and validation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from msgspec import UNSET

from fxconnector.core.buckets import HasDayGrid, bucket_open
from fxconnector.core.builders.spec import BarSpec, OpenMode, PriceSide, VolumeMode
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import MINUTE_MS, Timeframe

_NOTHING: tuple[OhlcvEvent, ...] = ()


class _Bar:
    """A bar being built (the current minute, or a higher timeframe's closed minutes)."""

    __slots__ = (
        "close",
        "count",
        "end_ms",
        "first_ts",
        "high",
        "last_ts",
        "low",
        "open",
        "open_fixed",
        "open_ms",
        "volume",
    )

    def __init__(
        self, open_ms: int, price: float, open_price: float, volume: float, ts_ms: int
    ) -> None:
        self.open_ms = open_ms
        self.open = open_price
        self.high = price if price > open_price else open_price
        self.low = price if price < open_price else open_price
        self.close = price
        self.volume = volume
        self.count = 1
        self.first_ts = ts_ms
        self.last_ts = ts_ms
        self.open_fixed = False  # True when the open is the previous bar's close
        self.end_ms = open_ms + 60_000  # where the next bucket starts (set for partials)


class _Series:
    """Everything the builder keeps for one symbol."""

    __slots__ = ("calendar", "floor_ms", "last_ts", "minute", "partials", "prev_close")

    def __init__(self, calendar: HasDayGrid, higher: Sequence[Timeframe]) -> None:
        self.calendar = calendar
        self.minute: _Bar | None = None
        self.partials: dict[Timeframe, _Bar | None] = dict.fromkeys(higher)
        self.prev_close: float | None = None
        self.floor_ms = 0  # the oldest minute a tick may still belong to
        self.last_ts: int | None = None  # newest tick of the closed minutes


class LiveBuilder:
    """Preview bars of every allowlisted timeframe for a set of symbols."""

    def __init__(
        self,
        calendars: Mapping[str, HasDayGrid],
        timeframes: Sequence[Timeframe],
        spec: BarSpec | None = None,
    ) -> None:
        if Timeframe.M1 not in timeframes:
            raise ValueError("the live builder needs 1m among its timeframes")
        spec = spec or BarSpec()
        self.spec = spec
        self.timeframes = tuple(sorted(set(timeframes), key=lambda tf: tf.ms))
        self._higher = tuple(tf for tf in self.timeframes if tf is not Timeframe.M1)
        self._series = {sym: _Series(cal, self._higher) for sym, cal in calendars.items()}
        self._side = (PriceSide.BID, PriceSide.ASK, PriceSide.MID).index(spec.price)
        self._size: Callable[[Tick], float] | None = (
            _SIZE[spec.price] if spec.volume is VolumeMode.SIZE else None
        )
        self._previous_close = spec.open_mode is OpenMode.PREVIOUS_CLOSE
        self.late_ticks: dict[str, int] = dict.fromkeys(calendars, 0)
        self._first_minute: dict[str, int] = {}

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._series)

    def update(self, tick: Tick) -> Sequence[OhlcvEvent] | None:
        """Apply one validated tick; return the preview bars it closed (often none).

        None means the tick was late: dropped and counted.
        """
        # The hot path: a tick inside the current minute touches one bar and allocates nothing.
        series = self._series[tick.symbol]
        ts = tick.ts_ms
        side = self._side
        price = tick.bid if side == 0 else tick.ask if side == 1 else (tick.bid + tick.ask) / 2.0
        bar = series.minute
        if bar is not None and 0 <= ts - bar.open_ms < 60_000:
            if ts >= bar.last_ts:
                bar.close = price
                bar.last_ts = ts
            elif ts < bar.first_ts:
                if not bar.open_fixed:
                    bar.open = price
                bar.first_ts = ts
            if price > bar.high:
                bar.high = price
            elif price < bar.low:
                bar.low = price
            if self._size is not None:
                bar.volume += self._size(tick)
            bar.count += 1
            return _NOTHING
        minute_ms = ts - ts % MINUTE_MS
        size = 1.0 if self._size is None else self._size(tick)
        if minute_ms < series.floor_ms:
            self.late_ticks[tick.symbol] += 1
            return None
        if bar is not None:
            closed = self._roll(tick.symbol, series, minute_ms)
        else:
            closed = self._roll_partials(tick.symbol, series, minute_ms)
        if tick.symbol not in self._first_minute:
            self._first_minute[tick.symbol] = minute_ms
        if self._previous_close and series.prev_close is not None:
            series.minute = _Bar(minute_ms, price, series.prev_close, size, ts)
            series.minute.open_fixed = True
        else:
            series.minute = _Bar(minute_ms, price, price, size, ts)
        series.floor_ms = minute_ms
        return closed or _NOTHING

    def close_until(self, now_ms: int) -> list[OhlcvEvent]:
        """Close every bar whose bucket ended at or before `now_ms`; return them as previews."""
        closed: list[OhlcvEvent] = []
        for symbol, series in self._series.items():
            bar = series.minute
            if bar is not None and bar.open_ms + MINUTE_MS <= now_ms:
                closed.extend(self._roll(symbol, series, now_ms))
                series.floor_ms = bar.open_ms + MINUTE_MS
            closed.extend(self._roll_partials(symbol, series, now_ms))
        return closed

    def preview(self, symbol: str, tf: Timeframe) -> OhlcvEvent | None:
        """The current preview of one symbol and timeframe, or None."""
        series = self._series[symbol]
        minute = series.minute
        if tf is Timeframe.M1:
            return None if minute is None else self._event(symbol, tf, minute)
        partial = series.partials[tf]
        if partial is None:
            if minute is None:
                return None
            return self._event(symbol, tf, minute, bucket_open(minute.open_ms, tf, series.calendar))
        if minute is None:
            return self._event(symbol, tf, partial)
        merged = _Bar(
            partial.open_ms, partial.close, partial.open, partial.volume, partial.first_ts
        )
        merged.high, merged.low, merged.count, merged.last_ts = (
            partial.high,
            partial.low,
            partial.count,
            partial.last_ts,
        )
        _fold(merged, minute)
        return self._event(symbol, tf, merged)

    def previews(self, symbol: str) -> list[OhlcvEvent]:
        """Current previews of every timeframe of one symbol."""
        found = (self.preview(symbol, tf) for tf in self.timeframes)
        return [event for event in found if event is not None]

    def _roll(self, symbol: str, series: _Series, boundary_ms: int) -> list[OhlcvEvent]:
        """Close the current minute and fold it into the higher partials."""
        bar = series.minute
        assert bar is not None
        closed = [self._event(symbol, Timeframe.M1, bar)]
        for tf in self._higher:
            partial = series.partials[tf]
            if partial is None:
                opened = bucket_open(bar.open_ms, tf, series.calendar)
                partial = _Bar(opened, bar.close, bar.open, bar.volume, bar.first_ts)
                partial.high, partial.low, partial.count, partial.last_ts = (
                    bar.high,
                    bar.low,
                    bar.count,
                    bar.last_ts,
                )
                partial.end_ms = _bucket_end(opened, tf, series.calendar)
                series.partials[tf] = partial
            else:
                _fold(partial, bar)
        series.prev_close = bar.close
        series.last_ts = bar.last_ts
        series.minute = None
        closed.extend(self._roll_partials(symbol, series, boundary_ms))
        return closed

    def _roll_partials(self, symbol: str, series: _Series, boundary_ms: int) -> list[OhlcvEvent]:
        """Close the higher partials whose bucket ends at or before `boundary_ms`."""
        closed = []
        for tf in self._higher:
            partial = series.partials[tf]
            if partial is not None and boundary_ms >= partial.end_ms:
                closed.append(self._event(symbol, tf, partial))
                series.partials[tf] = None
        return closed

    def first_minute_ms(self, symbol: str) -> int | None:
        """The first minute this builder saw a tick of `symbol` in (None before any)."""
        return self._first_minute.get(symbol)

    def last_tick_ms(self, symbol: str) -> int | None:
        """Time of the newest applied tick of `symbol`, or None before the first."""
        series = self._series[symbol]
        return series.minute.last_ts if series.minute is not None else series.last_ts

    def _event(
        self, symbol: str, tf: Timeframe, bar: _Bar, open_ms: int | None = None
    ) -> OhlcvEvent:
        start = bar.open_ms if open_ms is None else open_ms
        volume: float | int = bar.count if self._size is None else bar.volume
        return OhlcvEvent(
            symbol,
            tf,
            start,
            start + tf.ms - 1,
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            volume,
            bar.count,
            False,
            Source.STREAM,
            bar.last_ts,
            0,
        )


def _bucket_end(open_ms: int, tf: Timeframe, calendar: HasDayGrid) -> int:
    """Where the bucket after the one opening at `open_ms` starts (the geometry's next open).

    Within a trading day that is `open_ms + tf_ms`; a session-aligned bucket never runs past the
    next trading-day start (which only matters on 23h/25h days, in closed time).
    """
    end = open_ms + tf.ms
    if tf.session_aligned:
        end = min(end, calendar.day_grid.next_day_open(open_ms))
    return end


def _fold(into: _Bar, minute: _Bar) -> None:
    """Append a closed minute to a higher-timeframe bar (minute order)."""
    if minute.high > into.high:
        into.high = minute.high
    if minute.low < into.low:
        into.low = minute.low
    into.close = minute.close
    into.volume += minute.volume
    into.count += minute.count
    into.last_ts = minute.last_ts


def _bid_size(tick: Tick) -> float:
    size = tick.bid_volume
    return 0.0 if size is UNSET else size


def _ask_size(tick: Tick) -> float:
    size = tick.ask_volume
    return 0.0 if size is UNSET else size


def _mid_size(tick: Tick) -> float:
    return (_bid_size(tick) + _ask_size(tick)) / 2.0


_SIZE: dict[PriceSide, Callable[[Tick], float]] = {
    PriceSide.BID: _bid_size,
    PriceSide.ASK: _ask_size,
    PriceSide.MID: _mid_size,
}
