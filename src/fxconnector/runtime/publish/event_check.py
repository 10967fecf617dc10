"""Checks of what is read back from Redis before it is served: a shared Redis is not trusted.

Rules:
- Every event read from the events stream(s) is decoded against `ohlcv_event_v1` (the frozen
  model, unknown fields rejected) and checked for the bar invariants (`core.validation`), with
  the symbol's calendar when one is known (else every invariant but session alignment). It
  must also be an event of the stream it was read from (cluster layout: its own symbol).
- Ticks (the last-tick cache) must be valid `tick_v1` of the symbol they are stored under (the
  spread policy is the tick validation's, upstream: not repeated here).
- Snapshot bars must be a JSON array of valid finals of that series, ascending by open_ms.
- An invalid value is never served: the caller skips it, counts it and reports it here
  (`Rejects`): the count, a bounded list of recent samples for status `errors[]`, and a
  warning log for the 1st, 2nd, 4th, 8th... reject (loud at first, bounded under a broken
  peer). Valid values are passed on as the bytes Redis held (never re-encoded).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, cast

import msgspec

from fxconnector.core.buckets import HasDayGrid
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.status import ErrorEntry
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.validation.validator import (
    bar_problems,
    decode_checked,
    schema_problem,
    validate_tick,
)

log = logging.getLogger(__name__)

SAMPLES_KEPT: Final = 20
_LIST = msgspec.json.Decoder(list[OhlcvEvent])


@dataclass(frozen=True, slots=True)
class _Trusted:
    """A day grid under which the event's own open_ms is a session bucket boundary: used only
    when no calendar is known (epoch-aligned timeframes are still checked)."""

    open_ms: int

    @property
    def day_grid(self) -> _Trusted:
        return self

    def day_open(self, ts_ms: int) -> int:
        return self.open_ms


class Rejects:
    """Counts and samples invalid values read from Redis (module rules)."""

    def __init__(
        self, now_ms: Callable[[], int], on_reject: Callable[[str], None] | None = None
    ) -> None:
        self.count = 0
        self.samples: deque[ErrorEntry] = deque(maxlen=SAMPLES_KEPT)
        self._now_ms = now_ms
        self._on_reject = on_reject

    def add(self, kind: str, where: str, message: str) -> None:
        self.count += 1
        text = f"{where}: {message}"[:500]
        self.samples.append(
            ErrorEntry(ts=self._now_ms(), code=f"redis.invalid_{kind}", message=text)
        )
        if self._on_reject is not None:
            self._on_reject(kind)
        if self.count & (self.count - 1) == 0:
            log.warning("redis.invalid_%s (%d so far): %s", kind, self.count, text)


class EventCheck:
    """Validates events and snapshots read from the surface."""

    def __init__(
        self,
        rejects: Rejects,
        calendars: Mapping[str, HasDayGrid] | None = None,
    ) -> None:
        self.rejects = rejects
        # Kept by reference: the served symbol set adds the calendars of symbols found later.
        self._calendars = calendars if calendars is not None else {}

    def event(self, data: bytes, where: str, symbol: str | None = None) -> OhlcvEvent | None:
        """The decoded event when `data` is a valid event (of `symbol`, when given), else None
        (counted and sampled)."""
        checked = decode_checked(data, OhlcvEvent)
        event = checked.value
        if event is None:
            self.rejects.add("event", where, checked.problems[0].message)
            return None
        problem = self._problem(event)
        if problem is None and symbol is not None and event.symbol != symbol:
            problem = f"an event of {event.symbol} in the stream of {symbol}"
        if problem is not None:
            self.rejects.add("event", where, problem)
            return None
        return event

    def tick(self, data: bytes, symbol: str, where: str) -> bool:
        """Whether `data` is a valid `tick_v1` of `symbol` (else counted and sampled)."""
        checked = validate_tick(data)
        tick = checked.value
        if tick is None:
            problem = checked.problems[0].message
        elif tick.symbol != symbol:
            problem = f"a tick of {tick.symbol} under the key of {symbol}"
        else:
            return True
        self.rejects.add("tick", where, problem)
        return False

    def snapshot(self, bars: bytes, symbol: str, tf: Timeframe, where: str) -> str | None:
        """None when `bars` is a valid snapshot of the series, else why not (counted)."""
        try:
            events = _LIST.decode(bars)
        except msgspec.DecodeError as exc:
            problem: str | None = schema_problem(exc).message
        else:
            problem = None
            previous = -1
            for event in events:
                if event.symbol != symbol or event.tf is not tf or not event.complete:
                    problem = f"a bar that is not a final of {symbol} {tf.value}"
                elif event.open_ms <= previous:
                    problem = "bars not ascending by open_ms"
                else:
                    problem = self._problem(event)
                if problem is not None:
                    break
                previous = event.open_ms
        if problem is not None:
            self.rejects.add("snapshot", where, problem)
        return problem

    def _problem(self, event: OhlcvEvent) -> str | None:
        calendar = self._calendars.get(event.symbol)
        grid = calendar if calendar is not None else cast(HasDayGrid, _Trusted(event.open_ms))
        problems = bar_problems(event, grid)
        return problems[0].message if problems else None
