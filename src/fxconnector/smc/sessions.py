"""Session ranges (Asia, London, New York) in their IANA time zones, DST-aware.

Definition (docs/smc.md): a session is the local wall-clock window `[start, end)` of its zone on
every local date (Tokyo 09:00-18:00, London 08:00-17:00, New York 08:00-17:00 by default). The
bars whose open_ms falls in one window make one session; when it is complete (periods.py) its
hint gives top = the highest high, bottom = the lowest low, anchor = its first bar, confirm = the
bar at which it was complete, direction bull when its last close is at or above its first open,
else bear. Windows without bars (weekends, holidays) give nothing. Emitted for timeframes up to
`sessions_max_tf` (1h by default): a 4h or daily bar does not fit in a session.
"""

from __future__ import annotations

import datetime as dt

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.smc import Direction, SmcHint, SmcKind
from fxconnector.core.time_geom import from_ms, local_instant_ms
from fxconnector.smc.hints import HintMaker
from fxconnector.smc.periods import Extremes


class SessionTracker:
    """One session's windows and its current range."""

    __slots__ = (
        "_current",
        "_end",
        "_end_minute",
        "_kind",
        "_last",
        "_make",
        "_start",
        "_start_minute",
        "_zone",
    )

    def __init__(
        self, make: HintMaker, kind: SmcKind, zone: dt.tzinfo, start_minute: int, end_minute: int
    ) -> None:
        self._make = make
        self._kind = kind
        self._zone = zone
        self._start_minute = start_minute
        self._end_minute = end_minute
        self._start = -1
        self._end = -1
        self._current: Extremes | None = None
        self._last: SmcHint | None = None

    def active(self) -> list[SmcHint]:
        """The latest complete session."""
        return [] if self._last is None else [self._last]

    def clone(self) -> SessionTracker:
        other = SessionTracker(
            self._make, self._kind, self._zone, self._start_minute, self._end_minute
        )
        other._start, other._end = self._start, self._end
        other._current = None if self._current is None else self._current.copy()
        other._last = self._last
        return other

    def _window_at_or_after(self, ts_ms: int) -> tuple[int, int]:
        day = from_ms(ts_ms).astimezone(self._zone).date()
        while True:
            start = local_instant_ms(day, self._start_minute, self._zone)
            end = local_instant_ms(day, self._end_minute, self._zone)
            if ts_ms < end:
                return start, end
            day += dt.timedelta(days=1)

    def on_bar(self, bar: OhlcvEvent, out: list[SmcHint]) -> None:
        opened = bar.open_ms
        if opened >= self._end:
            if self._current is not None:
                self._emit(self._current, bar, out)
                self._current = None
            self._start, self._end = self._window_at_or_after(opened)
        if opened < self._start:
            return
        if self._current is None:
            self._current = Extremes.first(bar, self._start, self._end)
        else:
            self._current.add(bar)
        if bar.close_ms + 1 >= self._end:
            self._emit(self._current, bar, out)
            self._current = None

    def _emit(self, session: Extremes, bar: OhlcvEvent, out: list[SmcHint]) -> None:
        direction = Direction.BULL if session.close >= session.open else Direction.BEAR
        self._last = self._make.zone(
            self._kind, direction, session.first_open_ms, bar.close_ms, session.high, session.low
        )
        out.append(self._last)
