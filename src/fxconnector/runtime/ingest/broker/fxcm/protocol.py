"""The fxcm bridge's wire protocol, version 1: JSON lines on the bridge's stdin and stdout.

Rules:
- These structs are the one definition the adapter uses. `bridge.py` runs under the SDK's
  Python 3.7 and cannot import them; it keeps a plain-dict mirror (`MESSAGE_FIELDS`,
  `REQUEST_FIELDS`, ...) and `tests/runtime/ingest/broker/fxcm/test_bridge_py37.py` proves the
  two agree. Change both, and bump `PROTOCOL_VERSION` for any incompatible change.
- One JSON object per line, tagged by `type`. Unknown types and unknown fields are errors: the
  adapter counts them (with a sample) and never reconnects over them.
- Times are UTC epoch ms. A history bar is stamped at its OPEN (`open_ms`), as FXCM's `Date` is;
  `bars_to_events` turns it into our end-inclusive `[open_ms, close_ms]` final events here, once.
- Symbols on the wire are ours (`EURUSD`); the bridge maps them to FXCM's (`EUR/USD`) and back.
- Pure: no I/O, no clock. The human description is docs/fxcm_bridge_protocol.md.

Example lines (bridge → adapter):
    {"type":"hello","protocol":1,"bridge":"fxconnector-fxcm-bridge","python":"3.7.16",
     "sdk":"forexconnect","pid":4242}
    {"type":"tick","symbol":"EURUSD","bid":1.08412,"ask":1.08414,"ts_ms":1709733600123}
    {"type":"history_error","id":"h7","symbol":"EURUSD","message":"QuotesManager error: HTTP
     request failed object='/pricearchive/catalog.xml' errorCode=28 ..."}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final, Literal

import msgspec

from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.status import BrokerState
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.runtime.ingest.broker.port import HistoryAnswer, RejectedCandle

PROTOCOL_VERSION: Final = 3

PriceName = Literal["bid", "ask"]
OpenModeName = Literal["first_tick", "previous_close"]
LogLevel = Literal["debug", "info", "warning", "error"]
FatalCode = Literal["bad_credentials", "config", "sdk_missing", "protocol", "internal"]

#: Fatal codes that no restart can cure: the adapter stops and reports them as ConfigError.
PERMANENT_FATAL: Final[frozenset[str]] = frozenset(
    {"bad_credentials", "config", "sdk_missing", "protocol"}
)


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    """A protocol line: a JSON object whose `type` names the struct."""


# -- adapter → bridge ------------------------------------------------------------------------


class HistoryRequest(_Wire, frozen=True, tag="history"):
    """FXCM m1 candles with `from_ms <= open_ms < to_ms`, one side's prices."""

    id: str
    symbol: str
    from_ms: int
    to_ms: int
    price: PriceName
    open_mode: OpenModeName = "first_tick"


class SubscribeRequest(_Wire, frozen=True, tag="subscribe"):
    """Stream these symbols' offers from now on (replaces the previous set)."""

    symbols: list[str]


class ShutdownRequest(_Wire, frozen=True, tag="shutdown"):
    """Unsubscribe, log out and exit 0."""


OrderSide = Literal["buy", "sell"]
OrderKind = Literal["market", "limit", "stop"]
TimeInForceName = Literal["GTC", "IOC", "FOK"]
OrderStateName = Literal["not_found", "working", "filled", "cancelled", "rejected"]


class OrderSubmitRequest(_Wire, frozen=True, tag="order_submit"):
    """Place an order with FXCM custom id `custom_id` unless the tables already hold one (then
    the answer is that order's report and nothing is sent). Answered by `order_report` (or
    `order_error`) with the same `id`. Only a bridge started with `--orders` takes it."""

    id: str
    custom_id: str
    symbol: str
    side: OrderSide
    units: int
    order_type: OrderKind
    rate: float | None = None
    time_in_force: TimeInForceName | None = None
    stop_rate: float | None = None
    limit_rate: float | None = None


class OrderCancelRequest(_Wire, frozen=True, tag="order_cancel"):
    """Delete the working order of `custom_id` (DeleteOrder); answered by its `order_report`."""

    id: str
    custom_id: str


class OrderQueryRequest(_Wire, frozen=True, tag="order_query"):
    """What the ORDERS, TRADES and CLOSED_TRADES tables hold for `custom_id`."""

    id: str
    custom_id: str


Request = (
    HistoryRequest
    | SubscribeRequest
    | ShutdownRequest
    | OrderSubmitRequest
    | OrderCancelRequest
    | OrderQueryRequest
)


# -- bridge → adapter ------------------------------------------------------------------------


class Hello(_Wire, frozen=True, tag="hello"):
    """The first line the bridge writes, before it loads the SDK or logs in."""

    protocol: int
    bridge: str
    python: str
    sdk: str
    pid: int


class TickMessage(_Wire, frozen=True, tag="tick"):
    """One offers-table update, stamped with the row's own `Time` (never the receipt time)."""

    symbol: str
    bid: float
    ask: float
    ts_ms: int


class WireBar(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One FXCM m1 candle of one side, stamped at its open."""

    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: int


class WireRejected(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A history row the bridge could not convert (its minute, when its Date was readable)."""

    open_ms: int | None
    reason: str
    detail: str


class HistoryResult(_Wire, frozen=True, tag="history_result"):
    """The answer to a history request, ascending by open_ms. Rows the bridge could not convert
    are listed in `rejected`. Each chunk is asked from where the previous answer's rows ended (a
    truncated SDK answer leaves no hole); a chunk without any row is listed in `empty_chunks`.
    When a chunk after the first failed, `bars` hold the chunks before it (a prefix of the
    range) and `error` says why the answer ends early; the caller asks again from there."""

    id: str
    symbol: str
    bars: list[WireBar]
    rejected: list[WireRejected] = []
    error: str = ""
    #: `[from_ms, to_ms)` sub-requests the SDK answered without a row: not proven quiet.
    empty_chunks: list[tuple[int, int]] = []


class HistoryError(_Wire, frozen=True, tag="history_error"):
    """A history request failed; `message` is the SDK's own text."""

    id: str
    symbol: str
    message: str


class SessionMessage(_Wire, frozen=True, tag="session"):
    """A session status: an SDK status name (`SESSION_STATES`) or one of the bridge's own."""

    status: str
    detail: str
    ts_ms: int


class LogMessage(_Wire, frozen=True, tag="log"):
    """Something the operator should see in the connector's log."""

    level: LogLevel
    message: str


class FatalMessage(_Wire, frozen=True, tag="fatal"):
    """The bridge cannot go on and exits after this line."""

    code: FatalCode
    message: str


class WireFill(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One execution of an order: a trade it opened (`fill_id` = FXCM's TradeID) or, with
    `exit`, the close of such a trade by its attached stop or limit (`fill_id` = `close:` and
    the TradeID). `side` is the execution's side; `ts_ms` FXCM's open or close time."""

    fill_id: str
    units: int
    rate: float
    side: OrderSide
    ts_ms: int
    exit: bool = False


class OrderReportMessage(_Wire, frozen=True, tag="order_report"):
    """What FXCM's tables say of `custom_id`: the answer to a request (`id`), or, with `id`
    empty, news of a table update (never with state `not_found`)."""

    id: str
    custom_id: str
    state: OrderStateName
    order_id: str = ""
    fills: list[WireFill] = []
    reason: str = ""


class OrderErrorMessage(_Wire, frozen=True, tag="order_error"):
    """A request the bridge could not carry out to the end: not connected, or the session was
    lost before FXCM answered. `sent`: the request left for FXCM (it may hold the order)."""

    id: str
    custom_id: str
    message: str
    sent: bool


Message = (
    Hello
    | TickMessage
    | HistoryResult
    | HistoryError
    | SessionMessage
    | LogMessage
    | FatalMessage
    | OrderReportMessage
    | OrderErrorMessage
)

#: Session statuses and what they mean for the port. ForexConnect's O2GSessionStatus names
#: first, then the bridge's own (`SUBSCRIBED`: the offers subscription is (re)established and
#: ticks should flow; `LOGIN_RETRY`: a login failed, the next attempt waits `detail`).
#: The SDK's CONNECTED comes before the offers subscription, so it is still CONNECTING for us.
SESSION_STATES: Final[Mapping[str, BrokerState]] = {
    "DISCONNECTED": BrokerState.DISCONNECTED,
    "CONNECTING": BrokerState.CONNECTING,
    "TRADING_SESSION_REQUESTED": BrokerState.CONNECTING,
    "CONNECTED": BrokerState.CONNECTING,
    "RECONNECTING": BrokerState.CONNECTING,
    "DISCONNECTING": BrokerState.DISCONNECTED,
    "SESSION_LOST": BrokerState.DISCONNECTED,
    "PRICE_SESSION_RECONNECTING": BrokerState.CONNECTING,
    "CONNECTED_WITH_NEED_TO_CHANGE_PASSWORD": BrokerState.DISCONNECTED,  # fatal in the bridge
    "CHART_SESSION_RECONNECTING": BrokerState.CONNECTING,
    "SUBSCRIBED": BrokerState.CONNECTED,
    "LOGIN_RETRY": BrokerState.DISCONNECTED,
}

_MESSAGES: Final[msgspec.json.Decoder[Message]] = msgspec.json.Decoder(Message)
_REQUESTS: Final[msgspec.json.Decoder[Request]] = msgspec.json.Decoder(Request)
_ENCODER: Final = msgspec.json.Encoder()


def decode_message(line: bytes) -> Message:
    """One bridge line as a message; msgspec.DecodeError / ValidationError when it is not one."""
    return _MESSAGES.decode(line)


def decode_request(line: bytes) -> Request:
    """One adapter line as a request (for tests and tools)."""
    return _REQUESTS.decode(line)


def encode_line(wire: Request | Message) -> bytes:
    """`wire` as one protocol line, newline included."""
    return _ENCODER.encode(wire) + b"\n"


def bars_to_events(
    symbol: str, bars: Sequence[WireBar], from_ms: int, to_ms: int, *, now_ms: int
) -> HistoryAnswer:
    """FXCM's open-stamped m1 candles as final 1m events (complete, history, rev 0).

    `close_ms = open_ms + 1m - 1` and `event_ts = close_ms`. FXCM's Volume is a tick count, so
    `volume == tick_count`. In `previous_close` mode FXCM's open is the previous candle's close
    and may lie outside the candle's own high/low; our rule (core.builders.spec) is that
    high/low include the open, so they are widened here. A bar that is off the minute grid,
    outside the asked range, not yet ended at `now_ms`, out of order, non-finite, non-positive,
    or whose high/low contradict its close rejects itself only (`HistoryAnswer.rejected`, with
    its minute and a reason); the other bars are kept. FXCM has no completeness signal.
    """
    events: list[OhlcvEvent] = []
    rejected: list[RejectedCandle] = []
    previous = -1
    for bar in bars:
        minute = bar.open_ms - bar.open_ms % MINUTE_MS
        reason = _bar_problem(bar, from_ms, to_ms, now_ms, previous)
        if reason is not None:
            code, text = reason
            detail = f"fxcm history {symbol} bar at {bar.open_ms}: {text}"
            rejected.append(RejectedCandle(minute, code, detail))
            continue
        previous = bar.open_ms
        close_ms = bar.open_ms + MINUTE_MS - 1
        events.append(
            OhlcvEvent(
                symbol=symbol,
                tf=Timeframe.M1,
                open_ms=bar.open_ms,
                close_ms=close_ms,
                open=bar.open,
                high=max(bar.high, bar.open),
                low=min(bar.low, bar.open),
                close=bar.close,
                volume=bar.volume,
                tick_count=bar.volume,
                complete=True,
                source=Source.HISTORY,
                event_ts=close_ms,
                rev=0,
            )
        )
    return HistoryAnswer(events, rejected)


def _bar_problem(
    bar: WireBar, from_ms: int, to_ms: int, now_ms: int, previous: int
) -> tuple[str, str] | None:
    """(reason code, text) of what is wrong with one bar, or None."""
    if bar.open_ms % MINUTE_MS:
        return "off_minute", "Date is not on a minute boundary"
    if not from_ms <= bar.open_ms < to_ms:
        return "outside_range", f"outside the asked range [{from_ms}, {to_ms})"
    if bar.open_ms + MINUTE_MS > now_ms:
        return "not_ended", "the minute has not ended yet"
    if bar.open_ms <= previous:
        return "not_ascending", "bars are not strictly ascending"
    prices = (bar.open, bar.high, bar.low, bar.close)
    if not all(math.isfinite(p) and p > 0 for p in prices):
        return "price_not_positive", f"prices must be finite and positive, got {prices}"
    if not bar.low <= bar.close <= bar.high or bar.volume < 0:
        return "ohlc_inconsistent", "low <= close <= high and volume >= 0 do not hold"
    return None
