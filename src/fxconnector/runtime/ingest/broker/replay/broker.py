"""The replay broker: recorded ticks played back, and their aggregation as the broker's history.

Rules: the ticks handed in are the ones the pipeline will accept (already through the tick rails
and the calendar), so history and previews are built from the same ticks; `history_1m` is the
vectorised 1m aggregation of them (DESIGN §10), answered for any range at once. `ticks()` plays
them in file order, as fast as possible or paced at `speed` times recorded time.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import AsyncIterator

from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.builders.vector import build
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.errors import ConfigError
from fxconnector.core.model.bar import Source
from fxconnector.core.model.status import BrokerState
from fxconnector.core.model.tick import Tick, TickBatch
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.ingest.broker.port import HistoryAnswer, SessionEvent

_CHUNK = 10_000


class ReplayBroker:
    """Plays one symbol's recorded ticks; its history is their aggregation."""

    kind = "replay"

    def __init__(
        self, batch: TickBatch, spec: BarSpec, calendar: TradingCalendar, speed: float = 0.0
    ) -> None:
        if speed < 0:
            raise ConfigError(f"replay speed must be positive or max, not {speed}")
        self._batch = batch
        self._speed = speed
        columns, late = build(batch, (Timeframe.M1,), calendar, spec)
        #: Ticks the late-tick rail dropped from the history (and from a live builder's bars).
        self.late_ticks = late
        self._history = columns[Timeframe.M1].events(
            batch.symbol, Timeframe.M1, complete=True, source=Source.HISTORY
        )
        self._opens: list[int] = columns[Timeframe.M1].open_ms.tolist()  # bisected per call
        self._closed = False

    async def connect(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    async def ticks(self) -> AsyncIterator[Tick]:
        """The recorded ticks in file order; paced when a speed factor was given."""
        if len(self._batch) == 0:
            return
        first_ts = int(self._batch.ts_ms[0])
        wall_start = time.monotonic()
        # Materialise Tick objects a chunk at a time: a month is over a million of them.
        for start in range(0, len(self._batch), _CHUNK):
            for tick in self._batch.slice(start, start + _CHUNK).ticks():
                if self._closed:
                    return
                if self._speed > 0:
                    due = wall_start + (tick.ts_ms - first_ts) / 1000 / self._speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                yield tick

    async def history_1m(self, symbol: str, from_ms: int, to_ms: int) -> HistoryAnswer:
        """The recording's 1m bars in the range; the recording is the whole truth for any range
        (its completeness signal covers the range asked)."""
        if symbol != self._batch.symbol:
            raise ConfigError(f"this replay plays {self._batch.symbol}, not {symbol}")
        lo = bisect_left(self._opens, from_ms)
        hi = bisect_left(self._opens, to_ms)
        return HistoryAnswer(self._history[lo:hi], passed_until_ms=to_ms)

    async def session_events(self) -> AsyncIterator[SessionEvent]:
        yield SessionEvent(ts_ms=0, state=BrokerState.CONNECTED, detail="replay")
