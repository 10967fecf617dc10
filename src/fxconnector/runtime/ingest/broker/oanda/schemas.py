"""OANDA v20 wire structs, with OANDA's own field names (developer.oanda.com/rest-live-v20).

Rules: these mirror the venue's payloads and nothing else: prices stay the strings OANDA sends
(decimal text, converted once in `parse`), times stay RFC3339 text with nanoseconds. Unknown
fields are ignored (OANDA adds fields over time); a missing required field is a decode error,
which `parse` turns into BadBrokerData. No domain types here.
"""

from __future__ import annotations

from typing import Literal

import msgspec

#: The price component of candles: Bid, Ask or Mid (OANDA's `price` query parameter).
PriceComponent = Literal["B", "A", "M"]


class PriceBucket(msgspec.Struct, frozen=True):
    """One level of a price's depth: `{"price": "1.08995", "liquidity": 1000000}`."""

    price: str
    liquidity: int | float | None = None


class ClientPrice(msgspec.Struct, frozen=True, tag_field="type", tag="PRICE"):
    """A `PRICE` message of the pricing stream (v20 `ClientPrice`)."""

    instrument: str
    time: str
    bids: tuple[PriceBucket, ...] = ()
    asks: tuple[PriceBucket, ...] = ()
    tradeable: bool = True
    closeoutBid: str | None = None
    closeoutAsk: str | None = None
    #: Deprecated by OANDA (`tradeable`, `non-tradeable`, `invalid`); `tradeable` is the truth.
    status: str | None = None


class PricingHeartbeat(msgspec.Struct, frozen=True, tag_field="type", tag="HEARTBEAT"):
    """A `HEARTBEAT` message of the pricing stream (every 5 s, market open or not)."""

    time: str


#: One line of the pricing stream.
StreamMessage = ClientPrice | PricingHeartbeat


class CandlestickData(msgspec.Struct, frozen=True):
    """Open, high, low, close of one price component, as decimal strings."""

    o: str
    h: str
    l: str  # noqa: E741 - OANDA's field name
    c: str


class Candlestick(msgspec.Struct, frozen=True):
    """One candle; `time` is the candle's OPEN, `complete` is false while it may still change."""

    time: str
    volume: int
    complete: bool
    bid: CandlestickData | None = None
    ask: CandlestickData | None = None
    mid: CandlestickData | None = None


class CandlesResponse(msgspec.Struct, frozen=True):
    """The body of `GET /v3/instruments/{instrument}/candles`; each candle is decoded on its
    own (`Candlestick`), so one unreadable candle does not cost the rest of the answer."""

    instrument: str
    granularity: str
    candles: tuple[msgspec.Raw, ...] = ()


class CandleTime(msgspec.Struct, frozen=True):
    """Just the `time` of a candle that did not decode as a whole (to name its minute)."""

    time: str


class ErrorBody(msgspec.Struct, frozen=True):
    """The body of a v20 error answer (`{"errorMessage": "..."}`)."""

    errorMessage: str = ""
    errorCode: str | None = None
