"""The extremes of a period of time (a trading day, a week, a session), known when it ends.

Rules: a bar belongs to the period that contains its open_ms. A period is complete at the first
bar whose close reaches the period's end (its own last bar, `close_ms == end - 1`) or, when the
period's last minutes have no bar, at the first bar of a later period; that bar's close is the
confirm_ts. Of equal highs (lows) the first bar is the anchor.
"""

from __future__ import annotations

from dataclasses import dataclass

from fxconnector.core.model.bar import OhlcvEvent


@dataclass(slots=True)
class Extremes:
    """The running high/low of one period and where they were made."""

    start_ms: int
    end_ms: int
    first_open_ms: int
    open: float
    close: float
    high: float
    high_ts: int
    low: float
    low_ts: int

    @classmethod
    def first(cls, bar: OhlcvEvent, start_ms: int, end_ms: int) -> Extremes:
        return cls(
            start_ms,
            end_ms,
            bar.open_ms,
            bar.open,
            bar.close,
            bar.high,
            bar.open_ms,
            bar.low,
            bar.open_ms,
        )

    def add(self, bar: OhlcvEvent) -> None:
        if bar.high > self.high:
            self.high = bar.high
            self.high_ts = bar.open_ms
        if bar.low < self.low:
            self.low = bar.low
            self.low_ts = bar.open_ms
        self.close = bar.close

    def copy(self) -> Extremes:
        return Extremes(
            self.start_ms,
            self.end_ms,
            self.first_open_ms,
            self.open,
            self.close,
            self.high,
            self.high_ts,
            self.low,
            self.low_ts,
        )
