"""The symbols one process's API serves: its own, plus the namespace's in a shared namespace.

Rules:
- Own symbols (config `broker.symbols`) are always served. With `shared = True` (the surface is
  an external Redis: the cluster layout, or a single node other processes may share) the
  members of `NS:symbols` (every symbol some process of the namespace publishes) are served too:
  the HTTP API, SSE and WebSocket of any process serve every symbol of the namespace.
- The set is refreshed at most every `period_ms` (the injected clock), lazily: a request or the
  push reader calls `refresh_if_due()`, which does one SMEMBERS when due. A symbol another
  process starts later appears within a period; none disappears while the process runs (a
  foreign symbol whose owner stopped keeps serving what Redis still holds).
- A foreign symbol gets the calendar profile's calendar for it (the profile maps every symbol),
  added to `calendars`, the mapping the read-back checks (`event_check`) hold by reference.
- Redis trouble during a refresh keeps the set as it was (it is retried next period).
- The embedded default (`shared = False`) serves the own symbols only, with no Redis read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from fxconnector.core.buckets import HasDayGrid
from fxconnector.core.errors import TransientIOError
from fxconnector.runtime.publish.surface_reader import SurfaceReader

__all__ = ["DEFAULT_PERIOD_MS", "ServedSymbols"]

DEFAULT_PERIOD_MS: Final = 2_000


class ServedSymbols:
    """The served symbol set (module rules)."""

    def __init__(
        self,
        own: tuple[str, ...],
        *,
        reader: SurfaceReader | None,
        now_ms: Callable[[], int],
        calendars: dict[str, HasDayGrid],
        calendar_for: Callable[[str], HasDayGrid] | None = None,
        period_ms: int = DEFAULT_PERIOD_MS,
    ) -> None:
        self.own = own
        self._own = frozenset(own)
        self._reader = reader
        self._now_ms = now_ms
        self.calendars = calendars
        self._calendar_for = calendar_for
        self._period_ms = period_ms
        self._next_ms: int | None = None
        self._all: tuple[str, ...] = own
        self._set: frozenset[str] = frozenset(own)

    @property
    def shared(self) -> bool:
        return self._reader is not None

    def current(self) -> tuple[str, ...]:
        """Every served symbol: the own ones in config order, then the foreign ones sorted."""
        return self._all

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._set

    def is_own(self, symbol: str) -> bool:
        return symbol in self._own

    async def refresh_if_due(self) -> bool:
        """Refresh when a period has passed since the last one; True when the set grew."""
        if self._reader is None:
            return False
        now = self._now_ms()
        if self._next_ms is not None and now < self._next_ms:
            return False
        self._next_ms = now + self._period_ms
        try:
            members = await self._reader.symbols()
        except TransientIOError:
            return False  # kept as it was; retried next period
        return self._add(members)

    def _add(self, members: list[str]) -> bool:
        new = [s for s in members if s not in self._set]
        if not new:
            return False
        for symbol in new:
            if self._calendar_for is not None and symbol not in self.calendars:
                self.calendars[symbol] = self._calendar_for(symbol)
        foreign = sorted((self._set - self._own).union(new))
        self._all = (*self.own, *foreign)
        self._set = frozenset(self._all)
        return True
