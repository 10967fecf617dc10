"""What a push fan-out reads: which streams, how an entry is checked, what a client sees.

Rules:
- A feed names its stream(s) per layout (`streams`: stream key -> the symbol it stands for in
  a cursor, "" in the single layout), checks each entry read back from Redis before anything
  is kept or queued (`check`: None for an invalid entry, counted by the checker), and gives
  the fan-out what it filters and de-duplicates by (`Checked`: the entry's symbol and tf, and
  a key + rev: an entry whose key was passed on with the same or a higher rev is a duplicate;
  key None: never).
- `BarFeed` is the bar events stream (`kinds=bars`, SSE `event: bar`); the SMC layer's feed is
  `runtime.smc.push.SmcFeed` (`kinds=smc`, SSE `event: smc`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Protocol

from fxconnector.runtime.publish.event_check import EventCheck
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.push_cursor import streams_of


class Checked(NamedTuple):
    symbol: str
    tf: str
    key: int | str | None
    rev: int


class Feed(Protocol):
    #: The SSE event name and the WebSocket frame's key of its entries ("bar", "smc").
    name: str

    def streams(self, keys: SurfaceKeys, symbols: Iterable[str]) -> dict[str, str]: ...

    def check(self, data: bytes, where: str, symbol: str | None) -> Checked | None: ...


class BarFeed:
    """The bar events stream(s): finals are de-duplicated by (open_ms, rev), previews never."""

    name = "bar"

    def __init__(self, check: EventCheck) -> None:
        self._check = check

    def streams(self, keys: SurfaceKeys, symbols: Iterable[str]) -> dict[str, str]:
        return streams_of(keys, symbols)

    def check(self, data: bytes, where: str, symbol: str | None) -> Checked | None:
        event = self._check.event(data, where, symbol)
        if event is None:
            return None
        key = event.open_ms if event.complete else None
        return Checked(event.symbol, event.tf.value, key, event.rev)
