"""The sim broker: the generator's ticks played on a clock, and their aggregation as history.

Rules:
- Everything comes from `TickGenerator`, a pure function of (seed, symbol, minute), so the live
  stream and the history are cut from the same ticks: `history_1m` is exactly the 1m aggregation
  (core.builders.vector.build with the broker's BarSpec) of the ticks `ticks()` yields.
- Time is the injected `Clock`'s: a tick is yielded once the clock reaches its `ts_ms`, never
  before; history covers only minutes that have fully ended by the clock's now (a running or
  future minute has no history yet). With a ManualClock nothing sleeps for real.
- `ticks()` starts at the clock's now at connect (earlier ticks of that minute are skipped) and
  merges all symbols in ts order (equal ts: the order of `symbols`). Closing ends it.
- An unknown symbol is a ConfigError that names it.

It knows nothing of Redis, stores or the pipeline that consumes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence

import numpy as np

from fxconnector.core.builders.spec import BarSpec, OpenMode
from fxconnector.core.builders.vector import build
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.errors import BrokerDisconnected, ConfigError, ContractViolation
from fxconnector.core.model.bar import Source
from fxconnector.core.model.status import BrokerState
from fxconnector.core.model.tick import Tick, TickBatch
from fxconnector.core.time_geom import DAY_MS, MINUTE_MS, Timeframe
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.ingest.broker.port import HistoryAnswer, SessionEvent
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator

#: How far back `previous_close` history looks for the bar before the range (a long weekend
#: plus holidays fits).
_PREVIOUS_BAR_LOOKBACK_MS = 8 * DAY_MS
#: The most `ticks()` generates at once after the clock jumped far ahead (bounds memory).
_CHUNK_MS = 60 * MINUTE_MS


class SimBroker:
    """A seeded, calendar-aware demo broker (DESIGN §10) behind the BrokerPort."""

    kind = "sim"

    def __init__(
        self,
        generator: TickGenerator,
        symbols: Sequence[str],
        clock: Clock,
        spec: BarSpec,
        calendars: Mapping[str, TradingCalendar],
    ) -> None:
        if not symbols:
            raise ConfigError("sim broker needs at least one symbol")
        for symbol in symbols:
            generator.calendar(symbol)  # ConfigError naming an unknown symbol
            if symbol not in calendars:
                raise ConfigError(f"sim broker: no calendar for symbol {symbol!r}")
        self._generator = generator
        self._symbols = tuple(dict.fromkeys(symbols))
        self._clock = clock
        self._spec = spec
        self._calendars = {symbol: calendars[symbol] for symbol in self._symbols}
        self._connected_ms: int | None = None
        # One event per session, set at close: an iterator of an older session stays finished
        # even after a reconnect.
        self._stopped: asyncio.Event | None = None
        self._session: asyncio.Queue[SessionEvent] = asyncio.Queue()

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    async def connect(self) -> None:
        """Start a session at the clock's now; connecting while connected is a no-op."""
        if self._connected_ms is not None:
            return
        self._connected_ms = self._clock.now_ms()
        self._stopped = asyncio.Event()
        detail = "sim: " + ", ".join(self._symbols)
        self._session.put_nowait(SessionEvent(self._connected_ms, BrokerState.CONNECTED, detail))

    async def close(self) -> None:
        """End the session: running `ticks()` and `session_events()` iterators finish."""
        if self._stopped is not None and self._stopped.is_set():
            return
        if self._stopped is None:
            self._stopped = asyncio.Event()
        self._connected_ms = None
        self._stopped.set()
        self._session.put_nowait(SessionEvent(self._clock.now_ms(), BrokerState.STOPPED, "closed"))

    async def ticks(self) -> AsyncIterator[Tick]:
        """All symbols' ticks from connect on, each once the clock reaches it, until closed."""
        if self._connected_ms is None or self._stopped is None:
            raise BrokerDisconnected("sim broker: ticks() before connect()")
        start_ms = self._connected_ms
        stopped = self._stopped
        minute_ms = start_ms - start_ms % MINUTE_MS
        # A minute is generated only once the clock reaches it: no spinning ahead through quiet
        # or closed minutes, and a clock that stands still costs nothing. After a clock jump the
        # minutes already reached are generated together (vectorised), at most _CHUNK_MS at once.
        while await self._wait_until(minute_ms, stopped):
            now = self._clock.now_ms()
            reached = now - now % MINUTE_MS + MINUTE_MS
            chunk_end = min(max(reached, minute_ms + MINUTE_MS), minute_ms + _CHUNK_MS)
            for tick in self._merged_ticks(max(minute_ms, start_ms), chunk_end):
                if not await self._wait_until(tick.ts_ms, stopped):
                    return
                yield tick
            minute_ms = self._first_open_minute(chunk_end)

    async def history_1m(self, symbol: str, from_ms: int, to_ms: int) -> HistoryAnswer:
        """Final 1m bars of minutes with `from_ms <= open_ms < to_ms` that have ended by now.

        The sim's history is exact for every ended minute, so it says so: `passed_until_ms` is
        the end of the answered range (its completeness signal)."""
        calendar = self._calendar(symbol)
        now = self._clock.now_ms()
        first = -(-from_ms // MINUTE_MS) * MINUTE_MS  # a bar opening before from_ms is not asked
        end = min(-(-to_ms // MINUTE_MS) * MINUTE_MS, now - now % MINUTE_MS)
        if end <= first:
            return HistoryAnswer([])
        batch = self._generator.between(symbol, first, end)
        if self._spec.open_mode is OpenMode.PREVIOUS_CLOSE and len(batch):
            # the first bar's open is the close of the bar before it, as in any longer range
            previous = self._previous_bar_ticks(symbol, first)
            if previous is not None:
                batch = _joined(previous, batch)
        bars, late = build(batch, (Timeframe.M1,), calendar, self._spec)
        if late:
            raise ContractViolation(f"sim: {late} generated ticks of {symbol} were out of order")
        events = bars[Timeframe.M1].events(
            symbol, Timeframe.M1, complete=True, source=Source.HISTORY
        )
        return HistoryAnswer(
            [event for event in events if event.open_ms >= first], passed_until_ms=end
        )

    async def session_events(self) -> AsyncIterator[SessionEvent]:
        """CONNECTED at connect, STOPPED at close (then the iterator ends)."""
        while True:
            event = await self._session.get()
            yield event
            if event.state is BrokerState.STOPPED:
                return

    def _calendar(self, symbol: str) -> TradingCalendar:
        try:
            return self._calendars[symbol]
        except KeyError:
            known = ", ".join(self._symbols)
            raise ConfigError(f"sim broker: unknown symbol {symbol!r} (known: {known})") from None

    def _merged_ticks(self, from_ms: int, to_ms: int) -> list[Tick]:
        """Every symbol's ticks in `[from_ms, to_ms)`, merged in ts order."""
        batches = [self._generator.between(symbol, from_ms, to_ms) for symbol in self._symbols]
        ts = np.concatenate([batch.ts_ms for batch in batches])
        ticks = [tick for batch in batches for tick in batch.ticks()]
        # stable: equal times keep the order of `symbols`
        return [ticks[i] for i in np.argsort(ts, kind="stable").tolist()]

    def _first_open_minute(self, minute_ms: int) -> int:
        """`minute_ms`, or the next minute any symbol's calendar opens (a weekend in one step)."""
        calendars = [self._generator.calendar(s) for s in self._symbols]
        if any(calendar.is_open(minute_ms) for calendar in calendars):
            return minute_ms
        known = [ts for ts in (c.next_open(minute_ms) for c in calendars) if ts is not None]
        # past the calendars' range nothing opens again: step on minute by minute (each waits)
        return min(known) if known else minute_ms

    async def _wait_until(self, ts_ms: int, stopped: asyncio.Event) -> bool:
        """Sleep on the clock until `ts_ms`; False when the session stopped first."""
        if stopped.is_set():
            return False
        if self._clock.now_ms() >= ts_ms:
            return True
        sleeper = asyncio.ensure_future(self._clock.sleep_until(ts_ms))
        closer = asyncio.ensure_future(stopped.wait())
        try:
            await asyncio.wait((sleeper, closer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, closer):
                task.cancel()
            # reap both so no task outlives the wait (or warns when the loop closes)
            await asyncio.gather(sleeper, closer, return_exceptions=True)
        return not stopped.is_set()

    def _previous_bar_ticks(self, symbol: str, before_ms: int) -> TickBatch | None:
        """The ticks of the last minute with ticks before `before_ms` (None if none is near)."""
        calendar = self._generator.calendar(symbol)
        intervals = calendar.open_intervals(before_ms - _PREVIOUS_BAR_LOOKBACK_MS, before_ms)
        for start, end in reversed(intervals):
            for minute_ms in range(end - MINUTE_MS, start - 1, -MINUTE_MS):
                batch = self._generator.minute(symbol, minute_ms)
                if len(batch):
                    return batch
        return None


def _joined(head: TickBatch, tail: TickBatch) -> TickBatch:
    """`head` then `tail`."""
    bid_volume = ask_volume = None
    if head.bid_volume is not None and tail.bid_volume is not None:
        bid_volume = np.concatenate((head.bid_volume, tail.bid_volume))
    if head.ask_volume is not None and tail.ask_volume is not None:
        ask_volume = np.concatenate((head.ask_volume, tail.ask_volume))
    return TickBatch(
        symbol=tail.symbol,
        ts_ms=np.concatenate((head.ts_ms, tail.ts_ms)),
        bid=np.concatenate((head.bid, tail.bid)),
        ask=np.concatenate((head.ask, tail.ask)),
        bid_volume=bid_volume,
        ask_volume=ask_volume,
    )
