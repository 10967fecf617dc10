"""OANDA v20 payloads → domain values: pure functions, no I/O, no clock.

Rules:
- Symbols map at this edge only: our `EURUSD` is OANDA's `EUR_USD` (6-letter currency or metal
  symbols split 3/3, `XAUUSD` → `XAU_USD`). Anything else is a ConfigError naming the symbol.
- A tick carries OANDA's `time` (the broker's time), truncated to the millisecond, never the
  receipt time: bid = `bids[0].price`, ask = `asks[0].price`, sizes = their `liquidity` when sent.
- OANDA stamps candles at their OPEN: `time` becomes `open_ms`, `close_ms = open_ms + 59_999`.
  Only `complete: true` candles become final 1m events (`source=history`, `event_ts=close_ms`,
  `rev=0`, `volume = tick_count = volume`); an incomplete candle is left out, never final, and
  it is OANDA's completeness signal: every minute before the first incomplete candle has ended
  in OANDA's history (`HistoryAnswer.passed_until_ms`); its minute is `unfinished` (not quiet).
- A bad candle (unreadable, no price component, a price that is not a positive number, a
  negative volume, two candles for one minute) rejects itself only: it is listed in
  `HistoryAnswer.rejected` with its minute (when its time is readable) and a reason code; the
  rest of the answer is kept. Only an answer that is unusable as a whole raises BadBrokerData.
- A non-200 answer maps to our error tree (`answer_error`): 401/403 → ConfigError naming the
  setting, 429 → RateLimited, 5xx → BrokerDisconnected.
- Anything unreadable (bad JSON, missing field, unknown message type, a price that is not a
  positive finite number, a PRICE without bids or asks) raises BadBrokerData; the caller counts
  it and goes on. It is never a reason to reconnect.

Raw payloads, one line each of the pricing stream and one candles answer (`price=B`):

    {"type":"PRICE","time":"2024-03-06T14:30:05.123456789Z","bids":[{"price":"1.08995",
     "liquidity":1000000}],"asks":[{"price":"1.09008","liquidity":1000000}],
     "closeoutBid":"1.08995","closeoutAsk":"1.09008","status":"tradeable","tradeable":true,
     "instrument":"EUR_USD"}
    {"type":"HEARTBEAT","time":"2024-03-06T14:30:07.004533176Z"}

    {"instrument":"EUR_USD","granularity":"M1","candles":[{"complete":true,"volume":42,
     "time":"2024-03-06T14:30:00.000000000Z","bid":{"o":"1.08991","h":"1.08999",
     "l":"1.08985","c":"1.08995"}}]}
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import itertools
import math
import re
from dataclasses import dataclass
from typing import Final

import msgspec

from fxconnector.core.errors import (
    BadBrokerData,
    BrokerDisconnected,
    ConfigError,
    FxConnectorError,
)
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import MINUTE_MS, RANGE_END_MS, Timeframe, iso_utc, to_ms
from fxconnector.runtime.ingest.broker.oanda.schemas import (
    CandlesResponse,
    Candlestick,
    CandlestickData,
    CandleTime,
    ClientPrice,
    ErrorBody,
    PriceComponent,
    PricingHeartbeat,
    StreamMessage,
)
from fxconnector.runtime.ingest.broker.port import HistoryAnswer, RejectedCandle

#: How much of a payload an error message quotes.
_QUOTE_CHARS: Final = 80
_MESSAGE_CHARS: Final = 200

_SYMBOL = re.compile(r"[A-Z]{6}\Z")
_INSTRUMENT = re.compile(r"([A-Z]{3})_([A-Z]{3})\Z")
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})\Z"
)
_UNIX = re.compile(r"(\d{1,12})(?:\.(\d{1,9}))?\Z")

#: Where the token comes from (a hint, not a secret).
TOKEN_SETTING: Final = "set FXCONNECTOR_OANDA_TOKEN or oanda_token in the secrets file"  # noqa: S105
ACCOUNT_SETTING: Final = "account_id under [broker.oanda] in the config file"

_STREAM_DECODER: Final = msgspec.json.Decoder(StreamMessage)
_CANDLES_DECODER: Final = msgspec.json.Decoder(CandlesResponse)
_CANDLE_DECODER: Final = msgspec.json.Decoder(Candlestick)
_CANDLE_TIME_DECODER: Final = msgspec.json.Decoder(CandleTime)
_ERROR_DECODER: Final = msgspec.json.Decoder(ErrorBody)


class RateLimited(BrokerDisconnected):
    """OANDA answered 429; `retry_after_s` is its Retry-After, when it sent one."""

    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A HEARTBEAT: the stream is alive (it says nothing about prices)."""

    ts_ms: int


@dataclass(frozen=True, slots=True)
class Untradeable:
    """A PRICE with `tradeable: false`: the instrument is halted; skipped and counted."""

    symbol: str
    ts_ms: int


#: What one stream line becomes.
StreamItem = Tick | Heartbeat | Untradeable


def instrument_of(symbol: str) -> str:
    """OANDA's instrument name for our symbol: `EURUSD` → `EUR_USD`."""
    if not _SYMBOL.match(symbol):
        raise ConfigError(
            f"OANDA: cannot map symbol {symbol!r} to an instrument; only 6-letter currency "
            "or metal symbols (EURUSD, XAUUSD) are known: fix broker.symbols"
        )
    return f"{symbol[:3]}_{symbol[3:]}"


def symbol_of(instrument: str) -> str:
    """Our symbol for an OANDA instrument: `EUR_USD` → `EURUSD`."""
    match = _INSTRUMENT.match(instrument)
    if match is None:
        raise BadBrokerData(f"unknown instrument name {instrument[:_QUOTE_CHARS]!r}")
    return match.group(1) + match.group(2)


def parse_time_ms(text: str) -> int:
    """Epoch ms of an OANDA time: RFC3339 (nanoseconds allowed) or UNIX `seconds.fraction`.

    Fractions below the millisecond are truncated, so a time never moves into the next bucket.
    """
    match = _RFC3339.match(text)
    if match is not None:
        date, clock, fraction, zone = match.groups()
        hour, minute, second = int(clock[0:2]), int(clock[3:5]), int(clock[6:8])
        offset_min = 0 if zone == "Z" else int(zone[0] + zone[1:3]) * 60 + int(zone[0] + zone[4:6])
        try:
            midnight_ms = _midnight_ms(date)
        except ValueError:
            midnight_ms = None
        if (
            midnight_ms is None
            or hour > 23
            or minute > 59
            or second > 59
            or abs(offset_min) >= 1440
        ):
            raise BadBrokerData(f"invalid time {text[:_QUOTE_CHARS]!r}")
        ts_ms = (
            midnight_ms
            + ((hour * 60 + minute - offset_min) * 60 + second) * 1000
            + _fraction_ms(fraction)
        )
    elif (unix := _UNIX.match(text)) is not None:
        ts_ms = int(unix.group(1)) * 1000 + _fraction_ms(unix.group(2))
    else:
        raise BadBrokerData(f"invalid time {text[:_QUOTE_CHARS]!r}")
    if not 0 <= ts_ms < RANGE_END_MS:
        raise BadBrokerData(f"time {text[:_QUOTE_CHARS]!r} is outside the supported range")
    return ts_ms


def format_time(ts_ms: int) -> str:
    """RFC3339 UTC text for a query parameter (`from`, `to`)."""
    return iso_utc(ts_ms)


def parse_stream_line(line: str | bytes) -> StreamItem:
    """One line of the pricing stream as a Tick, Heartbeat or Untradeable."""
    try:
        message = _STREAM_DECODER.decode(line)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise BadBrokerData(f"unreadable stream message ({exc}): {_quote(line)}") from None
    if isinstance(message, PricingHeartbeat):
        return Heartbeat(parse_time_ms(message.time))
    return _price_item(message)


def parse_candles(body: bytes, symbol: str, price: PriceComponent) -> HistoryAnswer:
    """The complete M1 candles of a candles answer as final 1m events, ascending; bad candles
    listed as rejected, the first incomplete candle as the completeness signal."""
    try:
        response = _CANDLES_DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise BadBrokerData(f"unreadable candles answer ({exc}): {_quote(body)}") from None
    instrument = instrument_of(symbol)
    if response.instrument != instrument or response.granularity != "M1":
        raise BadBrokerData(
            f"asked for {instrument} M1 candles, got {response.instrument[:_QUOTE_CHARS]!r} "
            f"{response.granularity[:_QUOTE_CHARS]!r}"
        )
    events: list[OhlcvEvent] = []
    rejected: list[RejectedCandle] = []
    unfinished: list[int] = []
    for raw in response.candles:
        try:
            candle = _CANDLE_DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            rejected.append(RejectedCandle(_raw_minute(raw), "unreadable", str(exc)[:200]))
            continue
        try:
            if candle.complete:
                events.append(_candle_event(symbol, candle, price))
            else:
                minute = parse_time_ms(candle.time)
                unfinished.append(minute - minute % MINUTE_MS)
        except _BadCandle as exc:
            rejected.append(RejectedCandle(exc.open_ms, exc.reason, str(exc)))
        except BadBrokerData as exc:
            rejected.append(RejectedCandle(None, "bad_time", str(exc)))
    events.sort(key=lambda event: event.open_ms)
    twice = {a.open_ms for a, b in itertools.pairwise(events) if a.open_ms == b.open_ms}
    for minute in sorted(twice):
        detail = f"two {instrument} candles at {iso_utc(minute)}"
        rejected.append(RejectedCandle(minute, "duplicate_time", detail))
    events = [event for event in events if event.open_ms not in twice]
    return HistoryAnswer(events, rejected, min(unfinished, default=None), sorted(unfinished))


def _raw_minute(raw: msgspec.Raw) -> int | None:
    """The minute of an undecodable candle, when at least its `time` reads."""
    try:
        ts_ms = parse_time_ms(_CANDLE_TIME_DECODER.decode(raw).time)
    except (msgspec.DecodeError, BadBrokerData):
        return None
    return ts_ms - ts_ms % MINUTE_MS


class _BadCandle(BadBrokerData):
    """One candle failed a check: it is rejected alone."""

    def __init__(self, message: str, open_ms: int, reason: str) -> None:
        super().__init__(message)
        self.open_ms = open_ms
        self.reason = reason


def error_message(body: bytes) -> str:
    """The `errorMessage` of a v20 error body, else the start of the body's text."""
    try:
        message = _ERROR_DECODER.decode(body).errorMessage
    except msgspec.DecodeError:
        message = body.decode("utf-8", "replace")
    message = " ".join(message.split())
    return message[:_MESSAGE_CHARS] or "no message"


def answer_error(
    status: int,
    message: str,
    *,
    what: str,
    account_id: str,
    wait_s: float | None,
    fatal_4xx: bool,
) -> FxConnectorError:
    """Our error for a non-200 answer to `what`.

    401/403 are the token's (ConfigError naming the setting); 429 is RateLimited (`wait_s` from
    Retry-After); 5xx is BrokerDisconnected; any other answer is our configuration's
    (ConfigError) when `fatal_4xx` or when OANDA names the instrument, else BadBrokerData.
    """
    if status == 401:
        return ConfigError(f"OANDA rejected the token (401: {message}): {TOKEN_SETTING}")
    if status == 403:
        return ConfigError(
            f"OANDA refused account {account_id} to this token (403: {message}): "
            f"{TOKEN_SETTING} to a token of that account, or fix {ACCOUNT_SETTING}"
        )
    if status == 429:
        return RateLimited(f"OANDA rate limit on the {what} (429: {message})", wait_s)
    if status >= 500:
        return BrokerDisconnected(f"OANDA {what} failed ({status}: {message})")
    if fatal_4xx or "instrument" in message.lower() or status < 400:
        return ConfigError(
            f"OANDA refused the {what} ({status}: {message}): check broker.symbols, "
            f"{ACCOUNT_SETTING} and the URLs under [broker.oanda]"
        )
    return BadBrokerData(f"OANDA refused the {what} ({status}: {message})")


def retry_after_s(value: str | None, now_ms: int) -> float | None:
    """Seconds to wait from a `Retry-After` header (seconds or an HTTP date); None if unusable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (to_ms(moment) - now_ms) / 1000)


def _price_item(message: ClientPrice) -> Tick | Untradeable:
    symbol = symbol_of(message.instrument)
    ts_ms = parse_time_ms(message.time)
    if not message.tradeable:
        return Untradeable(symbol, ts_ms)
    if not message.bids or not message.asks:
        raise BadBrokerData(f"PRICE of {message.instrument} at {message.time} has no bids or asks")
    best_bid, best_ask = message.bids[0], message.asks[0]
    bid = _positive(best_bid.price, f"{message.instrument} bid")
    ask = _positive(best_ask.price, f"{message.instrument} ask")
    bid_size = _size(best_bid.liquidity, f"{message.instrument} bid liquidity")
    ask_size = _size(best_ask.liquidity, f"{message.instrument} ask liquidity")
    return Tick(
        symbol=symbol,
        bid=bid,
        ask=ask,
        ts_ms=ts_ms,
        bid_volume=msgspec.UNSET if bid_size is None else bid_size,
        ask_volume=msgspec.UNSET if ask_size is None else ask_size,
    )


def _candle_event(symbol: str, candle: Candlestick, price: PriceComponent) -> OhlcvEvent:
    open_ms = parse_time_ms(candle.time)
    minute = open_ms - open_ms % MINUTE_MS
    if open_ms % MINUTE_MS:
        raise _BadCandle(
            f"{symbol} candle at {candle.time} is off the minute", minute, "off_minute"
        )
    data = _component(candle, price)
    if data is None:
        raise _BadCandle(
            f"{symbol} candle at {candle.time} has no price component {price!r}",
            minute,
            "no_price_component",
        )
    if candle.volume < 0:
        raise _BadCandle(
            f"{symbol} candle at {candle.time} has volume {candle.volume}", minute, "bad_volume"
        )
    close_ms = open_ms + MINUTE_MS - 1
    try:
        o, h, low, c = float(data.o), float(data.h), float(data.l), float(data.c)
    except ValueError:
        o = h = low = c = math.nan
    if not (0 < o < math.inf and 0 < h < math.inf and 0 < low < math.inf and 0 < c < math.inf):
        ohlc = (data.o, data.h, data.l, data.c)
        raise _BadCandle(
            f"{symbol} candle at {candle.time} has a price that is not a positive number: "
            + repr(ohlc)[:_QUOTE_CHARS],
            minute,
            "price_not_positive",
        )
    if not low <= min(o, c) <= max(o, c) <= h:
        raise _BadCandle(
            f"{symbol} candle at {candle.time}: low <= open, close <= high does not hold",
            minute,
            "ohlc_inconsistent",
        )
    return OhlcvEvent(
        symbol=symbol,
        tf=Timeframe.M1,
        open_ms=open_ms,
        close_ms=close_ms,
        open=o,
        high=h,
        low=low,
        close=c,
        volume=candle.volume,
        tick_count=candle.volume,
        complete=True,
        source=Source.HISTORY,
        event_ts=close_ms,
        rev=0,
    )


def _component(candle: Candlestick, price: PriceComponent) -> CandlestickData | None:
    if price == "B":
        return candle.bid
    if price == "A":
        return candle.ask
    return candle.mid


def _positive(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadBrokerData(f"{what} is not a number: {text[:_QUOTE_CHARS]!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise BadBrokerData(f"{what} is not a positive price: {text[:_QUOTE_CHARS]!r}")
    return value


def _size(liquidity: float | None, what: str) -> float | None:
    if liquidity is None:
        return None
    if not math.isfinite(liquidity) or liquidity < 0:
        raise BadBrokerData(f"{what} is not a size: {liquidity!r}")
    return float(liquidity)


@functools.lru_cache(maxsize=1024)
def _midnight_ms(date: str) -> int:
    """Epoch ms of 00:00 UTC on `YYYY-MM-DD` (ValueError for a date that does not exist)."""
    return to_ms(dt.datetime.fromisoformat(date + "T00:00:00+00:00"))


def _fraction_ms(fraction: str | None) -> int:
    return int((fraction or "0")[:3].ljust(3, "0"))


def _quote(payload: str | bytes) -> str:
    text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
    return repr(text[:_QUOTE_CHARS])
