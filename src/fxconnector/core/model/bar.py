"""Bars and bar update events (DESIGN §3): the public `ohlcv_event_v1` payload.

Rules: one struct serves as the wire payload and the domain value; it is frozen, and the field
constraints mirror `contracts/public/ohlcv_event_v1.json` (a test proves they agree). Invariants
that span fields (bucket alignment, OHLC order, final => history/derived) are checked by
`core.validation`, not here, so decoding stays fast.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final

import msgspec

from fxconnector.core.time_geom import RANGE_END_MS, Timeframe

SYMBOL_PATTERN: Final = "^[A-Z][A-Z0-9]{2,15}$"

Symbol = Annotated[
    str, msgspec.Meta(pattern=SYMBOL_PATTERN, description="Instrument, e.g. EURUSD, XAUUSD")
]
EpochMs = Annotated[int, msgspec.Meta(ge=0, lt=RANGE_END_MS, description="UTC epoch milliseconds")]
Price = Annotated[float, msgspec.Meta(gt=0)]
Volume = Annotated[float, msgspec.Meta(ge=0)] | Annotated[int, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class Source(StrEnum):
    """Where a bar comes from: broker history (final 1m), derived (final higher tf), stream."""

    HISTORY = "history"
    DERIVED = "derived"
    STREAM = "stream"


FINAL_SOURCES: Final = frozenset({Source.HISTORY, Source.DERIVED})


class OhlcvEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A bar update: an upsert keyed by (symbol, tf, open_ms).

    `gc=False`: a bar holds only scalars, strings and enum members, so it can never be part of
    a reference cycle; untracked, the millions a store scan or a rebuild makes cost the cyclic
    GC nothing (its passes over them stalled the event loop for 100+ ms).
    """

    symbol: Symbol
    tf: Timeframe
    open_ms: EpochMs
    close_ms: EpochMs
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Volume
    tick_count: Count
    complete: bool
    source: Source
    event_ts: EpochMs
    rev: Count

    @property
    def key(self) -> tuple[str, Timeframe, int]:
        """The upsert key."""
        return (self.symbol, self.tf, self.open_ms)


class StoredFinal(OhlcvEvent, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A final bar as the SSOT stores it: the public event plus why a revision was made.

    `reason` is empty (and omitted from the line) for the first final of a key; a revision
    (`rev > 0`) carries its reason, e.g. `broker correction` or `repair`.
    """

    reason: str = ""

    def event(self) -> OhlcvEvent:
        """The public event, without the storage-only field."""
        return OhlcvEvent(
            symbol=self.symbol,
            tf=self.tf,
            open_ms=self.open_ms,
            close_ms=self.close_ms,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            tick_count=self.tick_count,
            complete=self.complete,
            source=self.source,
            event_ts=self.event_ts,
            rev=self.rev,
        )
