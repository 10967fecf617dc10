"""fxcm bridge: owns one ForexConnect session and speaks JSON lines on stdio (protocol 1).

The ForexConnect SDK ships wheels for Python 3.7 only, so this is a separate program that the
connector starts under `broker.fxcm.python` (DESIGN §10). It is one file on purpose: it runs
outside our package, under another interpreter.

Rules:
- Python 3.7 and the standard library plus the `forexconnect` SDK only (a test parses the file
  with feature_version=(3, 7) and checks its imports). No walrus, no match, no positional-only
  parameters, no runtime `list[int]`: annotations are postponed (`from __future__ import
  annotations`) and never evaluated; typing aliases live under TYPE_CHECKING. Nothing of
  fxconnector is imported; `protocol.py` holds the msgspec mirror of the dicts below
  (`MESSAGE_FIELDS`, `REQUEST_FIELDS`, ...) and a test proves they agree.
- stdout carries protocol lines only (docs/fxcm_bridge_protocol.md). At start the protocol takes
  a private copy of fd 1 and fd 1 is pointed at stderr, so nothing the SDK or a stray print
  writes can corrupt the stream. Diagnostics go to stderr.
- Credentials come from FXCONNECTOR_FXCM_USER / FXCONNECTOR_FXCM_PASSWORD or from the secrets
  file named by FXCONNECTOR_SECRETS_FILE (owner-only permissions), never from argv; their values
  are redacted from every message and log line.
- One owner thread (the main thread) makes every SDK call: login, table subscription,
  get_history, logout. SDK callbacks (session status, offers rows) run on SDK threads and only
  convert and enqueue; they never call the SDK. `get_history` busy-waits on the price-history
  communicator's `is_ready` and must never run on a callback thread.
- A tick's time is the offers row's own `Time` (FXCM's, UTC), never the receipt time. A history
  candle's `Date` stamps its OPEN; it becomes `open_ms` here, at the edge. Naive datetimes from
  or to the SDK are UTC by FXCM's convention and are converted explicitly.
- History is fetched in chunks of `--chunk-minutes` (the SDK bounds quotes per request), only
  for minutes that have ended; a chunk ending near now that fails is asked again open-ended
  (FXCM fails for ranges near "now", ForexConnectAPI #17). A row that cannot be converted (a
  non-finite price, an unreadable Date) rejects itself only and is listed in `rejected`. When
  the first chunk fails the answer is `history_error` with the SDK's text; when a later chunk
  fails, the chunks before it are sent (a prefix of the range, never a hole in its middle)
  with the failure in `error`, and the connector asks again from where it ended.
- A lost session (SESSION_LOST, or a DISCONNECTED we did not ask for) is logged out, and after a
  capped, jittered backoff logged in again and the offers subscribed again; when the SDK
  reconnects by itself (RECONNECTING, then CONNECTED) the offers are subscribed again too.
  A login refused for bad credentials (or an account that must change its password first,
  CONNECTED_WITH_NEED_TO_CHANGE_PASSWORD) is fatal (exit 2) with a clear message: retrying
  would only risk locking the account.
"""

# Type checking: the file passes mypy --strict like the rest of the package (nothing excluded);
# the SDK is untyped and is used through `Any`. Variable annotations are postponed, so the
# `list[str]` spellings below are never evaluated on 3.7.

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import queue
import random
import re
import signal
import stat
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from collections.abc import Iterable

    Message = dict[str, Any]

PROTOCOL_VERSION = 3
BRIDGE_NAME = "fxconnector-fxcm-bridge"

USER_ENV = "FXCONNECTOR_FXCM_USER"
PASSWORD_ENV = "FXCONNECTOR_FXCM_PASSWORD"  # noqa: S105 (the variable's name, not a password)
SECRETS_FILE_ENV = "FXCONNECTOR_SECRETS_FILE"

# -- the protocol mirror (protocol.py is the msgspec definition; a test proves they agree) ----

MESSAGE_FIELDS = {
    "hello": ("protocol", "bridge", "python", "sdk", "pid"),
    "tick": ("symbol", "bid", "ask", "ts_ms"),
    "history_result": ("id", "symbol", "bars", "rejected", "error", "empty_chunks"),
    "history_error": ("id", "symbol", "message"),
    "session": ("status", "detail", "ts_ms"),
    "log": ("level", "message"),
    "fatal": ("code", "message"),
    "order_report": ("id", "custom_id", "state", "order_id", "fills", "reason"),
    "order_error": ("id", "custom_id", "message", "sent"),
}
FILL_FIELDS = ("fill_id", "units", "rate", "side", "ts_ms", "exit")
BAR_FIELDS = ("open_ms", "open", "high", "low", "close", "volume")
REJECTED_FIELDS = ("open_ms", "reason", "detail")
REQUEST_FIELDS = {
    "history": ("id", "symbol", "from_ms", "to_ms", "price", "open_mode"),
    "subscribe": ("symbols",),
    "shutdown": (),
    "order_submit": (
        "id",
        "custom_id",
        "symbol",
        "side",
        "units",
        "order_type",
        "rate",
        "time_in_force",
        "stop_rate",
        "limit_rate",
    ),
    "order_cancel": ("id", "custom_id"),
    "order_query": ("id", "custom_id"),
}
REQUEST_DEFAULTS: dict[str, dict[str, Any]] = {
    "history": {"open_mode": "first_tick"},
    "order_submit": {"rate": None, "time_in_force": None, "stop_rate": None, "limit_rate": None},
}
ORDER_REQUESTS = ("order_submit", "order_cancel", "order_query")
ORDER_SIDES = ("buy", "sell")
ORDER_KINDS = ("market", "limit", "stop")
TIMES_IN_FORCE = ("GTC", "IOC", "FOK")
ORDER_STATES = ("not_found", "working", "filled", "cancelled", "rejected")
#: Our order kinds as FXCM order types: true market open, limit entry, stop entry.
FXCM_ORDER_TYPES = {"market": "OM", "limit": "LE", "stop": "SE"}
FXCM_BUY_SELL = {"buy": "B", "sell": "S"}
_CUSTOM_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
PRICE_SIDES = ("bid", "ask")
OPEN_MODES = ("first_tick", "previous_close")
LOG_LEVELS = ("debug", "info", "warning", "error")
FATAL_CODES = ("bad_credentials", "config", "sdk_missing", "protocol", "internal")
#: ForexConnect's O2GSessionStatus names, then the bridge's own statuses.
SDK_STATUSES = (
    "DISCONNECTED",
    "CONNECTING",
    "TRADING_SESSION_REQUESTED",
    "CONNECTED",
    "RECONNECTING",
    "DISCONNECTING",
    "SESSION_LOST",
    "PRICE_SESSION_RECONNECTING",
    "CONNECTED_WITH_NEED_TO_CHANGE_PASSWORD",
    "CHART_SESSION_RECONNECTING",
)
BRIDGE_STATUSES = ("SUBSCRIBED", "LOGIN_RETRY")

EXIT_OK = 0
EXIT_FATAL = 2
EXIT_INTERNAL = 3

MINUTE_MS = 60000
DAY_MS = 86400000
#: datetime.UTC is new in 3.11; this runs on 3.7.
UTC = dt.timezone.utc  # noqa: UP017
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
#: 1970-01-01 as an OLE automation date (days since 1899-12-30), ForexConnect's DATE type.
OLE_UNIX_EPOCH_DAYS = 25569
_SYMBOL = re.compile(r"^[A-Z][A-Z0-9]{2,15}$")
_RECONNECTING = ("RECONNECTING", "PRICE_SESSION_RECONNECTING", "CHART_SESSION_RECONNECTING")
#: Login refusals that no retry can cure (matched case-insensitively against the SDK's text),
#: e.g. FXCM's "User or connection doesn't exist." (a wrong user name, an account id used as
#: one, or Demo/Real mixed up: ForexConnectAPI #21, #24) and "ORA-20003: Access denied" (#20).
_BAD_CREDENTIALS = re.compile(
    r"password|user or connection|user ?name|user ?id|login ?id|credential|authenticat"
    r"|unauthori[sz]ed|access denied|invalid user|incorrect user",
    re.IGNORECASE,
)
_LOUD_BAD_ROWS = 10

log = logging.getLogger("fxcm-bridge")


class Fatal(Exception):
    """The bridge cannot go on: reported as a `fatal` message, then exit 2."""

    def __init__(self, code: str, message: str) -> None:
        Exception.__init__(self, message)
        self.code = code
        self.message = message


class RequestError(ValueError):
    """A request line that breaks the protocol; names the request when it can."""

    def __init__(
        self, message: str, request_id: str = "", symbol: str = "", kind: str = ""
    ) -> None:
        ValueError.__init__(self, message)
        self.request_id = request_id
        self.symbol = symbol
        self.kind = kind
        self.custom_id = ""


# -- pure helpers ------------------------------------------------------------------------------


def to_fxcm_instrument(symbol: str) -> str:
    """Our `EURUSD` as FXCM's `EUR/USD`; names that are not a 6-letter pair stay as they are."""
    if len(symbol) == 6 and symbol.isalpha():
        return symbol[:3] + "/" + symbol[3:]
    return symbol


def from_fxcm_instrument(instrument: str) -> str:
    """FXCM's `EUR/USD` as our `EURUSD`."""
    return instrument.replace("/", "")


def to_epoch_ms(value: Any) -> int:
    """An SDK time as UTC epoch ms.

    ForexConnect stamps in UTC: a naive `datetime` (what the Python SDK hands out) is UTC, an
    aware one is converted, a numpy `datetime64` (get_history's `Date`) is naive UTC, and a
    number is an OLE automation date (days since 1899-12-30, the C++ API's DATE).
    """
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        delta = moment - EPOCH
        result = delta.days * DAY_MS + delta.seconds * 1000 + delta.microseconds // 1000
    elif str(getattr(value, "dtype", "")).startswith("datetime64"):
        result = int(value.astype("datetime64[ms]").astype("int64"))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        days = float(value)
        if not math.isfinite(days):
            raise ValueError("time is not finite")
        result = round((days - OLE_UNIX_EPOCH_DAYS) * DAY_MS)
    else:
        raise ValueError(f"unsupported time value of type {type(value).__name__}")
    if result < 0:
        raise ValueError(f"time {result} is before 1970")
    return result


def to_sdk_time(ms: int) -> dt.datetime:
    """UTC epoch ms as the naive UTC datetime get_history expects."""
    return (EPOCH + dt.timedelta(milliseconds=ms)).replace(tzinfo=None)


def column_ms(column: Any) -> list[int]:
    """get_history's `Date` column (datetime64[ns], naive UTC) as epoch ms."""
    if str(getattr(column, "dtype", "")).startswith("datetime64"):
        return [int(v) for v in column.astype("datetime64[ms]").astype("int64").tolist()]
    return [to_epoch_ms(v) for v in column]


def rows_to_bars(
    data: Any, price: str, start_ms: int, stop_ms: int, now_ms: int, rejected: Any = None
) -> list[Message]:
    """get_history's structured array as bar dicts of one side, for ended minutes in range.

    A row with a non-finite price or an unreadable Date is left out and, when `rejected` (a
    list) is given, appended to it as a rejected-row dict (`REJECTED_FIELDS`)."""
    if len(data) == 0:
        return []
    side = "Bid" if price == "bid" else "Ask"
    opens_ms = column_ms(data["Date"])
    columns = [data[side + name].tolist() for name in ("Open", "High", "Low", "Close")]
    volumes = data["Volume"].tolist()
    bars = []
    for i, open_ms in enumerate(opens_ms):
        if open_ms < 0:
            _reject(rejected, None, "bad_time", "FXCM history row with an unreadable Date")
            continue
        if not start_ms <= open_ms < stop_ms or open_ms + MINUTE_MS > now_ms:
            continue  # outside the chunk, or the forming minute
        values = [float(column[i]) for column in columns]
        if not all(math.isfinite(v) for v in values):
            text = f"FXCM history row at {open_ms} ms has a non-finite price"
            if rejected is None:
                raise ValueError(text)
            _reject(rejected, open_ms - open_ms % MINUTE_MS, "price_not_finite", text)
            continue
        bars.append(bar_message(open_ms, values[0], values[1], values[2], values[3], volumes[i]))
    return bars


def _reject(rejected: Any, open_ms: Any, reason: str, detail: str) -> None:
    if rejected is not None:
        rejected.append({"open_ms": open_ms, "reason": reason, "detail": detail})


def describe(exc: BaseException) -> str:
    """An exception as text for the protocol: the SDK's own message first."""
    text = str(exc).strip() or type(exc).__name__
    if type(exc) is Exception:
        return text
    return f"{type(exc).__name__}: {text}"


def looks_like_bad_credentials(text: str) -> bool:
    return _BAD_CREDENTIALS.search(text) is not None


def wall_ms() -> int:
    return int(time.time() * 1000)


def read_secrets_file(path: str) -> dict[str, str]:
    """`key = "value"` lines of the connector's TOML secrets file (the subset it uses)."""
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise Fatal("config", f"cannot read the secrets file {path}: {describe(exc)}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise Fatal("config", f"secrets file {path} is readable by others; run: chmod 600 {path}")
    values = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        match = re.match(r"^([A-Za-z0-9_]+)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|'[^']*')\s*(#.*)?$", text)
        if match is None:
            # the line may hold a secret: name only its number
            raise Fatal("config", f'secrets file {path}: line {number} is not `key = "value"`')
        raw = match.group(2)
        values[match.group(1)] = json.loads(raw) if raw.startswith('"') else raw[1:-1]
    return values


def load_credentials(environ: dict[str, str]) -> tuple[str, str]:
    """(user, password) from the environment, else from the secrets file it names."""
    user = environ.get(USER_ENV, "")
    password = environ.get(PASSWORD_ENV, "")
    path = environ.get(SECRETS_FILE_ENV, "")
    if (not user or not password) and path:
        values = read_secrets_file(path)
        user = user or values.get("fxcm_user", "")
        password = password or values.get("fxcm_password", "")
    if not user or not password:
        raise Fatal(
            "config",
            f"no FXCM credentials: set {USER_ENV} and {PASSWORD_ENV}, or fxcm_user and "
            f"fxcm_password in the secrets file named by {SECRETS_FILE_ENV}",
        )
    return user, password


# -- messages (plain dicts; see MESSAGE_FIELDS) ------------------------------------------------


def hello_message(sdk: str) -> Message:
    python = ".".join(str(part) for part in sys.version_info[:3])
    return {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "bridge": BRIDGE_NAME,
        "python": python,
        "sdk": sdk,
        "pid": os.getpid(),
    }


def tick_message(symbol: str, bid: float, ask: float, ts_ms: int) -> Message:
    return {"type": "tick", "symbol": symbol, "bid": bid, "ask": ask, "ts_ms": ts_ms}


def bar_message(
    open_ms: int, open_: float, high: float, low: float, close: float, volume: int
) -> Message:
    return {
        "open_ms": open_ms,
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": int(volume),
    }


def history_result_message(
    request_id: str,
    symbol: str,
    bars: list[Message],
    rejected: Any = None,
    error: str = "",
    empty_chunks: Any = None,
) -> Message:
    return {
        "type": "history_result",
        "id": request_id,
        "symbol": symbol,
        "bars": bars,
        "rejected": list(rejected or []),
        "error": error,
        "empty_chunks": [list(pair) for pair in empty_chunks or []],
    }


def history_error_message(request_id: str, symbol: str, message: str) -> Message:
    return {"type": "history_error", "id": request_id, "symbol": symbol, "message": message}


def session_message(status: str, detail: str, ts_ms: int) -> Message:
    return {"type": "session", "status": status, "detail": detail, "ts_ms": ts_ms}


def log_message(level: str, message: str) -> Message:
    return {"type": "log", "level": level, "message": message}


def fatal_message(code: str, message: str) -> Message:
    return {"type": "fatal", "code": code, "message": message}


def order_report_message(
    request_id: str,
    custom_id: str,
    state: str,
    order_id: str = "",
    fills: Any = None,
    reason: str = "",
) -> Message:
    return {
        "type": "order_report",
        "id": request_id,
        "custom_id": custom_id,
        "state": state,
        "order_id": order_id,
        "fills": list(fills or []),
        "reason": reason,
    }


def order_error_message(request_id: str, custom_id: str, message: str, sent: bool) -> Message:
    return {
        "type": "order_error",
        "id": request_id,
        "custom_id": custom_id,
        "message": message,
        "sent": sent,
    }


def fill_message(
    fill_id: str, units: int, rate: float, side: str, ts_ms: int, exit_: bool = False
) -> Message:
    return {
        "fill_id": fill_id,
        "units": int(units),
        "rate": float(rate),
        "side": side,
        "ts_ms": ts_ms,
        "exit": exit_,
    }


def parse_request(line: bytes) -> Message:
    """One request line as a dict with every field present; RequestError when it is not one."""
    try:
        request = json.loads(line.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise RequestError(f"not a JSON line: {exc}") from None
    if not isinstance(request, dict):
        raise RequestError("a request is a JSON object")
    kind = request.get("type")
    if kind not in REQUEST_FIELDS:
        raise RequestError(f"unknown request type {kind!r}")
    raw_id, raw_symbol = request.get("id"), request.get("symbol")
    request_id = raw_id if isinstance(raw_id, str) else ""
    symbol = raw_symbol if isinstance(raw_symbol, str) else ""
    fields = REQUEST_FIELDS[kind]
    unknown = sorted(set(request) - set(fields) - {"type"})
    if unknown:
        names = ", ".join(unknown)
        raise RequestError(f"unknown fields {names} in {kind}", request_id, symbol)
    for name, default in REQUEST_DEFAULTS.get(kind, {}).items():
        request.setdefault(name, default)
    missing = [name for name in fields if name not in request]
    if missing:
        names = ", ".join(missing)
        raise RequestError(f"missing {names} in {kind}", request_id, symbol)
    if kind == "history":
        _check_history(request, request_id, symbol)
    elif kind in ORDER_REQUESTS:
        _check_order(request, request_id)
    elif kind == "subscribe":
        symbols = request["symbols"]
        if not isinstance(symbols, list) or not all(
            isinstance(s, str) and _SYMBOL.match(s) for s in symbols
        ):
            raise RequestError("subscribe: symbols must be a list of symbols like EURUSD")
    return request


def _check_order(request: Message, request_id: str) -> None:
    kind = request["type"]

    def bad(text: str) -> RequestError:
        error = RequestError(f"{kind}: {text}", request_id, "", kind)
        custom_id = request.get("custom_id")
        error.custom_id = custom_id if isinstance(custom_id, str) else ""
        return error

    if not request_id:
        raise bad("id must be a non-empty string")
    custom_id = request["custom_id"]
    if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
        raise bad("custom_id must be 1-64 of A-Z a-z 0-9 . _ : -")
    if kind != "order_submit":
        return
    if not isinstance(request["symbol"], str) or not _SYMBOL.match(request["symbol"]):
        raise bad("symbol must look like EURUSD")
    if request["side"] not in ORDER_SIDES:
        raise bad("side must be buy or sell")
    units = request["units"]
    if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
        raise bad("units must be a positive integer")
    if request["order_type"] not in ORDER_KINDS:
        raise bad("order_type must be market, limit or stop")
    if request["time_in_force"] not in (None, *TIMES_IN_FORCE):
        raise bad("time_in_force must be GTC, IOC or FOK")
    for name in ("rate", "stop_rate", "limit_rate"):
        value = request[name]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(f"{name} must be a number")
        if not (math.isfinite(value) and value > 0):
            raise bad(f"{name} must be finite and positive")
    if request["order_type"] != "market" and request["rate"] is None:
        raise bad("a limit or stop order needs its rate")


def _check_history(request: Message, request_id: str, symbol: str) -> None:
    if not request_id:
        raise RequestError("history: id must be a non-empty string")
    if not _SYMBOL.match(symbol):
        raise RequestError("history: symbol must look like EURUSD", request_id, symbol)
    for name in ("from_ms", "to_ms"):
        value = request[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise RequestError(f"history: {name} must be epoch ms", request_id, symbol)
    if request["price"] not in PRICE_SIDES:
        raise RequestError("history: price must be bid or ask", request_id, symbol)
    if request["open_mode"] not in OPEN_MODES:
        raise RequestError("history: open_mode must be first_tick or previous_close", request_id)


# -- output ------------------------------------------------------------------------------------


class Emitter:
    """Writes protocol lines from any thread, in order, through one writer thread.

    Ticks are dropped (and counted) when the adapter stops reading; other messages wait.
    """

    def __init__(self, stream: Any, max_queued: int = 100000) -> None:
        self._stream = stream
        self._queue: queue.Queue[Message | None] = queue.Queue(maxsize=max_queued)
        self._secrets: list[str] = []
        self.dropped_ticks = 0
        self._thread = threading.Thread(target=self._run, name="protocol-writer", daemon=True)
        self._thread.start()

    def set_secrets(self, values: Iterable[str]) -> None:
        self._secrets = [v for v in values if v]

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "********")
        return text

    def send(self, message: Message) -> None:
        for key in ("message", "detail"):
            if isinstance(message.get(key), str):
                message[key] = self.redact(message[key])
        self._queue.put(message)

    def send_tick(self, message: Message) -> None:
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.dropped_ticks += 1

    def close(self, timeout_s: float) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            message = self._queue.get()
            batch = 0
            while message is not None:
                self._write(message)
                batch += 1
                if batch >= 1000:
                    break
                try:
                    message = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._flush()
            if message is None:
                return

    def _write(self, message: Message) -> None:
        try:
            line = json.dumps(message, separators=(",", ":"), allow_nan=False)
        except ValueError as exc:  # a NaN slipped through: drop the line, never break JSON
            log.error("dropped an unencodable %s message: %s", message.get("type"), exc)
            return
        try:
            self._stream.write(line.encode("utf-8") + b"\n")
        except OSError:
            os._exit(EXIT_OK)  # the adapter is gone: nobody is left to serve

    def _flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            os._exit(EXIT_OK)


class Backoff:
    """min(cap, base * 2**n) with jitter, reset after `reset_after_s` healthy (as resilience.py)."""

    def __init__(self, base_s: float, cap_s: float, reset_after_s: float = 60.0) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.reset_after_s = reset_after_s
        self.failures = 0
        self._healthy_since_s: float | None = None
        self._rng = random.Random()  # noqa: S311 (jitter, not cryptography)

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2.0**self.failures)
        self.failures += 1
        self._healthy_since_s = None
        return self._rng.uniform(ceiling / 2.0, ceiling)

    def healthy(self, now_s: float) -> None:
        if self._healthy_since_s is None:
            self._healthy_since_s = now_s
        elif now_s - self._healthy_since_s >= self.reset_after_s:
            self.failures = 0


# -- the session owner -------------------------------------------------------------------------


class Bridge:
    """The owner thread: every SDK call happens in `run()`, on the thread that calls it."""

    def __init__(self, sdk: Any, emitter: Emitter, user: str, password: str, options: Any) -> None:
        self._sdk = sdk
        self._emitter = emitter
        self._user = user
        self._password = password
        self._url = options.url
        self._connection = options.connection
        self._chunk_ms = options.chunk_minutes * MINUTE_MS
        self._near_now_ms = int(options.near_now_s * 1000)
        self._backoff = Backoff(options.backoff_base_s, options.backoff_cap_s)
        self.inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._symbols: list[str] = []
        # FXCM instrument -> our symbol; replaced whole, read by the SDK's table thread
        self._wanted: dict[str, str] = {}
        self._fx: Any = None
        self._listener: Any = None
        self._generation = 0
        self._connected = False
        self._retry_due = False
        self._reconnecting = False
        self._bad_rows = 0
        self._password_expired = False  # set by the SDK thread, read after login returns
        self._desk = OrderDesk(sdk, emitter, self.inbox) if options.orders else None
        self._status_names: dict[Any, str] = {}
        enum = sdk.fxcorepy.AO2GSessionStatus.O2GSessionStatus
        for name in SDK_STATUSES:
            value = getattr(enum, name, None)
            if value is not None:
                self._status_names[value] = name

    def run(self) -> None:
        """Log in, serve requests, recover lost sessions; returns after shutdown or stdin EOF."""
        try:
            while self._ensure_connected():
                try:
                    item = self.inbox.get(timeout=1.0)
                except queue.Empty:
                    item = None
                if self._connected:
                    self._backoff.healthy(time.monotonic())
                if item is not None and not self._handle(item):
                    break
        finally:
            self._close_session()

    # -- session ---------------------------------------------------------------------------

    def _ensure_connected(self) -> bool:
        """Log in (after the backoff delay when retrying); False when told to stop meanwhile."""
        while not self._connected:
            if self._retry_due:
                delay = self._backoff.next_delay()
                self._session("LOGIN_RETRY", f"next login in {delay:.1f} s")
                if not self._idle(delay):
                    return False
            error = self._login()
            if error is not None:
                self._retry_due = True
                self._log("warning", f"FXCM login failed: {error}")
        return True

    def _login(self) -> str | None:
        """One login and subscription; None when done, else the (retryable) error's text."""
        self._generation += 1
        generation = self._generation
        fx = self._sdk.ForexConnect()

        def on_status(session: Any, status: Any) -> None:  # an SDK thread
            self._on_status(generation, status)

        try:
            fx.login(
                self._user,
                self._password,
                self._url,
                self._connection,
                session_status_callback=on_status,
            )
        except Exception as exc:
            text = describe(exc)
            self._discard(fx, logout=True)
            if self._password_expired:
                raise Fatal(
                    "bad_credentials",
                    "FXCM wants a new password for this account "
                    "(CONNECTED_WITH_NEED_TO_CHANGE_PASSWORD): change it in FXCM's Trading "
                    f"Station or web site, then set the new one in {PASSWORD_ENV}.",
                ) from None
            if looks_like_bad_credentials(text):
                raise Fatal(
                    "bad_credentials",
                    f"FXCM refused the login ({self._connection}): {text.rstrip('.')}. "
                    f"Check {USER_ENV} "
                    f"and {PASSWORD_ENV} (or the secrets file) and broker.fxcm.connection.",
                ) from None
            return text
        self._fx = fx
        self._connected = True
        self._retry_due = False
        self._reconnecting = False
        try:
            self._subscribe()
            if self._desk is not None:
                self._desk.attach(fx, generation)
                self._session("SUBSCRIBED", "ORDERS,TRADES,CLOSED_TRADES")
        except Exception as exc:
            self._lose(f"subscription failed: {describe(exc)}", logout=True)
            return describe(exc)
        return None

    def _on_status(self, generation: int, status: Any) -> None:
        """Session status callback (an SDK thread): report it, hand it to the owner."""
        name = self._status_names.get(status) or str(getattr(status, "name", status))
        if generation != self._generation:
            return  # late news of an abandoned session
        if name == "CONNECTED_WITH_NEED_TO_CHANGE_PASSWORD":
            self._password_expired = True
        self._session(name, "")
        self.inbox.put(("status", generation, name))

    def _on_status_item(self, generation: int, name: str) -> None:
        if generation != self._generation or not self._connected:
            return
        if name in ("SESSION_LOST", "DISCONNECTED"):
            # a lost session cannot log out (the SDK would wait 30 s for news that never come)
            self._lose(f"FXCM session {name}", logout=name != "SESSION_LOST")
        elif name in _RECONNECTING:
            self._reconnecting = True
        elif name == "CONNECTED" and self._reconnecting:
            self._reconnecting = False
            self._log("info", "FXCM reconnected by itself; subscribing the offers again")
            try:
                self._subscribe()
            except Exception as exc:
                self._lose(f"offers re-subscription failed: {describe(exc)}", logout=True)

    def _lose(self, reason: str, logout: bool) -> None:
        self._connected = False
        self._retry_due = True
        self._log("warning", f"{reason}; logging in again")
        self._unsubscribe()
        if self._desk is not None:
            self._desk.detach(reason)
        fx, self._fx = self._fx, None
        self._discard(fx, logout)

    def _discard(self, fx: Any, logout: bool) -> None:
        if fx is None or not logout:
            return
        try:
            fx.logout()
        except Exception as exc:
            log.warning("logout failed: %s", describe(exc))

    def _close_session(self) -> None:
        self._unsubscribe()
        if self._desk is not None:
            self._desk.detach("the bridge is stopping")
        fx, self._fx = self._fx, None
        self._connected = False
        self._discard(fx, logout=True)

    def _subscribe(self) -> None:
        """(Re)subscribe the offers table for the wanted symbols."""
        self._unsubscribe()
        self._wanted = {to_fxcm_instrument(s): s for s in self._symbols}
        if not self._symbols:
            return
        table = self._fx.get_table(self._sdk.ForexConnect.OFFERS)
        self._check_offers(table)
        self._listener = self._sdk.Common.subscribe_table_updates(
            table, on_change_callback=self._on_row, on_add_callback=self._on_row
        )
        self._session("SUBSCRIBED", ",".join(self._symbols))

    def _check_offers(self, table: Any) -> None:
        try:
            listed = {row.instrument: row.subscription_status for row in table}
        except Exception as exc:
            log.info("cannot list the offers table: %s", describe(exc))
            return
        for instrument, symbol in sorted(self._wanted.items()):
            if instrument not in listed:
                self._log("warning", f"{symbol} ({instrument}) is not in the FXCM offers table")
            elif listed[instrument] != "T":
                self._log(
                    "warning",
                    f"{symbol} ({instrument}) is not subscribed in the FXCM account "
                    f"(subscription status {listed[instrument]!r}); no ticks will come",
                )

    def _unsubscribe(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        try:
            listener.unsubscribe()
        except Exception as exc:
            log.warning("unsubscribing the offers table failed: %s", describe(exc))

    def _on_row(self, listener: Any, row_id: Any, row: Any) -> None:
        """Offers update (an SDK thread): a tick stamped with the row's own time."""
        try:
            symbol = self._wanted.get(row.instrument)
            if symbol is None:
                return
            bid = float(row.bid)
            ask = float(row.ask)
            if not (math.isfinite(bid) and math.isfinite(ask)):
                raise ValueError("non-finite price")
            ts_ms = to_epoch_ms(row.time)
        except Exception as exc:
            self._bad_rows += 1
            if self._bad_rows <= _LOUD_BAD_ROWS or self._bad_rows % 1000 == 0:
                self._log(
                    "warning",
                    f"unusable offers row ({self._bad_rows} so far): {describe(exc)}",
                )
            return
        self._emitter.send_tick(tick_message(symbol, bid, ask, ts_ms))

    # -- requests ----------------------------------------------------------------------------

    def _idle(self, delay_s: float) -> bool:
        """Serve the inbox for `delay_s` while not connected; False when told to stop."""
        deadline = time.monotonic() + delay_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            try:
                item = self.inbox.get(timeout=remaining)
            except queue.Empty:
                return True
            if not self._handle(item):
                return False

    def _handle(self, item: tuple[Any, ...]) -> bool:
        """One inbox item; False when the bridge should stop."""
        kind = item[0]
        if kind == "eof":
            return False
        if kind == "status":
            self._on_status_item(item[1], item[2])
            return True
        if kind == "bad_request":
            error = item[1]
            self._log("error", f"bad request: {error}")
            if error.kind in ORDER_REQUESTS:
                answer = order_error_message(error.request_id, error.custom_id, str(error), False)
                self._emitter.send(answer)
            elif error.request_id:
                self._emitter.send(
                    history_error_message(error.request_id, error.symbol, str(error))
                )
            return True
        if kind == "order_sdk":
            if self._desk is not None:
                self._desk.on_sdk(item)
            return True
        request = item[1]
        if request["type"] == "shutdown":
            return False
        if request["type"] in ORDER_REQUESTS:
            if self._desk is None:
                text = "this bridge was started without --orders: it places no orders"
                self._emitter.send(
                    order_error_message(request["id"], request["custom_id"], text, False)
                )
            else:
                self._desk.handle(request, self._connected)
            return True
        if request["type"] == "subscribe":
            self._symbols = list(dict.fromkeys(request["symbols"]))
            if self._connected:
                try:
                    self._subscribe()
                except Exception as exc:
                    self._lose(f"offers subscription failed: {describe(exc)}", logout=True)
            return True
        self._history(request)
        return True

    def _history(self, request: Message) -> None:
        request_id = request["id"]
        symbol = request["symbol"]
        if not self._connected:
            text = "not connected to FXCM: the session is being established again"
            self._emitter.send(history_error_message(request_id, symbol, text))
            return
        rejected = []  # type: list[Message]
        empty = []  # type: list[list[int]]
        try:
            bars, error = self._fetch(request, rejected, empty)
        except Exception as exc:
            text = describe(exc)
            log.warning("history %s %s failed: %s", request_id, symbol, text)
            self._emitter.send(history_error_message(request_id, symbol, text))
            return
        if error:
            log.warning("history %s %s ends early: %s", request_id, symbol, error)
        self._emitter.send(history_result_message(request_id, symbol, bars, rejected, error, empty))

    def _fetch(
        self, request: Message, rejected: list[Message], empty: list[list[int]]
    ) -> tuple[list[Message], str]:
        """Every ended m1 candle with from_ms <= open < to_ms, in chunks, ascending, and why
        the answer ends early ("" when it does not). The first chunk's failure raises.

        Each chunk starts where the previous one's rows ended, so an SDK answer cut short
        leaves no hole; a chunk without any row is recorded in `empty`."""
        now_ms = wall_ms()
        first = -(-request["from_ms"] // MINUTE_MS) * MINUTE_MS
        end = min(-(-request["to_ms"] // MINUTE_MS) * MINUTE_MS, now_ms - now_ms % MINUTE_MS)
        instrument = to_fxcm_instrument(request["symbol"])
        modes = self._sdk.fxcorepy.O2GCandleOpenPriceMode
        mode = modes.FIRST_TICK if request["open_mode"] == "first_tick" else modes.PREVIOUS_CLOSE
        by_open: dict[int, Message] = {}
        start = first
        error = ""
        calls = 0
        most_calls = 4 * (-(-(end - first) // self._chunk_ms)) + 4
        while start < end:
            calls += 1
            if calls > most_calls:
                error = f"answers kept ending early; stopped at {start} ms"
                break
            stop = min(start + self._chunk_ms, end)
            try:
                chunk = self._chunk(
                    instrument, start, stop, request["price"], mode, now_ms, rejected
                )
            except Exception as exc:
                if start == first:
                    raise
                # the chunks before this one are a prefix of the range: send them
                error = f"chunk from {start} ms failed: {describe(exc)}"
                break
            for bar in chunk:
                by_open[bar["open_ms"]] = bar
            opens = [bar["open_ms"] for bar in chunk]
            opens += [row["open_ms"] for row in rejected if row["open_ms"] is not None]
            last = max([o for o in opens if start <= o < stop], default=None)
            if last is None:
                empty.append([start, stop])
                start = stop
            else:
                start = last + MINUTE_MS  # ask again from where this answer ended
        return [by_open[key] for key in sorted(by_open)], error

    def _chunk(
        self,
        instrument: str,
        start: int,
        stop: int,
        price: str,
        mode: Any,
        now_ms: int,
        rejected: list[Message],
    ) -> list[Message]:
        # date_to is asked one minute past the chunk, so an inclusive or exclusive `date_to`
        # both cover it; rows outside [start, stop) are dropped by rows_to_bars.
        count = (stop - start) // MINUTE_MS + 1
        try:
            data = self._fx.get_history(
                instrument,
                "m1",
                to_sdk_time(start),
                to_sdk_time(stop),
                count,
                candle_open_price_mode=mode,
            )
        except Exception as exc:
            if stop < now_ms - self._near_now_ms:
                raise
            self._log(
                "info",
                f"get_history failed for a range ending near now ({describe(exc)}); "
                "asking again up to now",
            )
            data = self._fx.get_history(
                instrument, "m1", to_sdk_time(start), None, -1, candle_open_price_mode=mode
            )
        return rows_to_bars(data, price, start, stop, now_ms, rejected)

    # -- output helpers ----------------------------------------------------------------------

    def _session(self, status: str, detail: str) -> None:
        self._emitter.send(session_message(status, detail, wall_ms()))

    def _log(self, level: str, text: str) -> None:
        """A line for the operator, through the connector's log (not repeated on stderr)."""
        self._emitter.send(log_message(level, text))


# -- the order side ----------------------------------------------------------------------------


class OrderDesk:
    """The order side of the session (`--orders`): every SDK call on the owner thread.

    FXCM's custom id (CUSTOM_ID; the ORDERS row's `request_txt`, the trade rows'
    `open_order_request_txt`) is the caller's idempotency key: a submit whose custom id the
    tables already hold, or whose CreateOrder is still in flight, sends nothing and is answered
    with what FXCM holds. The response listener and the table listeners run on SDK threads and
    only enqueue; requests are sent with the session's asynchronous `send_request` and answered
    when FXCM's completion (or failure) comes. Orders FXCM deleted as rejected (`R`) or
    cancelled (`C`), and requests it failed, are remembered for the process's life: the ORDERS
    table forgets them.
    """

    def __init__(self, sdk: Any, emitter: Emitter, inbox: Any) -> None:
        self._sdk = sdk
        self._emitter = emitter
        self._inbox = inbox
        self._fx: Any = None
        self._generation = 0
        self._table_listeners: list[Any] = []
        self._response_listener: Any = None
        #: request id -> [kind, custom id, answer ids]
        self._inflight: dict[str, list[Any]] = {}
        #: custom id -> request id of its CreateOrder in flight
        self._creating: dict[str, str] = {}
        #: custom id -> (state, order id, reason) of orders that left the ORDERS table
        self._ended: dict[str, tuple[str, str, str]] = {}

    # -- session ---------------------------------------------------------------------------

    def attach(self, fx: Any, generation: int) -> None:
        """Subscribe the response listener and the ORDERS, TRADES, CLOSED_TRADES tables."""
        self._fx = fx
        self._generation = generation
        inbox = self._inbox
        factory = fx.session.response_reader_factory

        listener_base: Any = self._sdk.fxcorepy.AO2GResponseListener

        class Responses(listener_base):  # type: ignore[misc]
            def on_request_completed(self, request_id: Any, response: Any) -> None:
                try:
                    order_id = str(factory.create_order_response_reader(response).order_id)
                except Exception:
                    order_id = ""  # a DeleteOrder's response has no order reader
                inbox.put(("order_sdk", generation, "completed", str(request_id), order_id))

            def on_request_failed(self, request_id: Any, error: Any) -> None:
                inbox.put(("order_sdk", generation, "failed", str(request_id), str(error)))

            def on_tables_updates(self, response: Any) -> None:
                pass

        self._response_listener = Responses()
        fx.session.subscribe_response(self._response_listener)
        common = self._sdk.Common
        forex = self._sdk.ForexConnect

        def order_changed(listener: Any, row_id: Any, row: Any) -> None:
            self._table_event("orders", row, "")

        def order_deleted(listener: Any, row_id: Any, row: Any) -> None:
            self._table_event("orders", row, str(row.status))

        def trade_added(listener: Any, row_id: Any, row: Any) -> None:
            self._table_event("trades", row, "")

        self._table_listeners = [
            common.subscribe_table_updates(
                fx.get_table(forex.ORDERS),
                on_add_callback=order_changed,
                on_change_callback=order_changed,
                on_delete_callback=order_deleted,
            ),
            common.subscribe_table_updates(fx.get_table(forex.TRADES), on_add_callback=trade_added),
            common.subscribe_table_updates(
                fx.get_table(forex.CLOSED_TRADES), on_add_callback=trade_added
            ),
        ]

    def _table_event(self, table: str, row: Any, deleted_status: str) -> None:
        """A table listener (an SDK thread): the row's custom id and what happened, enqueued."""
        try:
            if table == "orders":
                custom_id, order_id = str(row.request_txt or ""), str(row.order_id)
            else:
                custom_id, order_id = str(row.open_order_request_txt or ""), str(row.open_order_id)
        except Exception as exc:
            log.warning("unusable %s row: %s", table, describe(exc))
            return
        if custom_id:
            item = ("order_sdk", self._generation, "table", custom_id, order_id, deleted_status)
            self._inbox.put(item)

    def detach(self, reason: str) -> None:
        """The session is gone: every request in flight is answered `order_error` (sent)."""
        for _kind, custom_id, answer_ids in self._inflight.values():
            for answer_id in answer_ids:
                text = f"FXCM session ended before FXCM answered: {reason}"
                self._emitter.send(order_error_message(answer_id, custom_id, text, True))
        self._inflight.clear()
        self._creating.clear()
        for listener in self._table_listeners:
            try:
                listener.unsubscribe()
            except Exception as exc:
                log.warning("unsubscribing a trading table failed: %s", describe(exc))
        self._table_listeners = []
        fx, self._fx = self._fx, None
        if fx is not None and self._response_listener is not None:
            try:
                fx.session.unsubscribe_response(self._response_listener)
            except Exception as exc:
                log.warning("unsubscribing the response listener failed: %s", describe(exc))
        self._response_listener = None

    # -- requests (owner thread) -----------------------------------------------------------

    def handle(self, request: Message, connected: bool) -> None:
        answer_id, custom_id = request["id"], request["custom_id"]
        if not connected or self._fx is None:
            text = "not connected to FXCM: the session is being established again"
            self._emitter.send(order_error_message(answer_id, custom_id, text, False))
            return
        try:
            if request["type"] == "order_submit":
                self._submit(request)
            elif request["type"] == "order_cancel":
                self._cancel(answer_id, custom_id)
            else:
                self._emitter.send(self.report(answer_id, custom_id))
        except Exception as exc:
            # reading a table failed: say so; a request already handed to FXCM is answered later
            text = f"FXCM tables unreadable: {describe(exc)}"
            self._emitter.send(order_error_message(answer_id, custom_id, text, False))

    def _submit(self, request: Message) -> None:
        answer_id, custom_id = request["id"], request["custom_id"]
        known = self.report(answer_id, custom_id)
        if known["state"] != "not_found":
            self._emitter.send(known)
            return
        in_flight = self._creating.get(custom_id)
        if in_flight is not None:  # never a second CreateOrder: wait for the first one's answer
            self._inflight[in_flight][2].append(answer_id)
            return
        sdk, fx = self._sdk, self._fx
        instrument = to_fxcm_instrument(request["symbol"])
        offer = next(
            (r for r in fx.get_table(sdk.ForexConnect.OFFERS) if r.instrument == instrument), None
        )
        account = next(iter(fx.get_table(sdk.ForexConnect.ACCOUNTS)), None)
        if offer is None or account is None:
            missing = f"{instrument} is not in the offers table" if offer is None else "no account"
            self._emitter.send(
                order_report_message(answer_id, custom_id, "rejected", "", [], missing)
            )
            return
        params = {
            "OFFER_ID": offer.offer_id,
            "ACCOUNT_ID": account.account_id,
            "BUY_SELL": FXCM_BUY_SELL[request["side"]],
            "AMOUNT": request["units"],
            "CUSTOM_ID": custom_id,
        }
        for name, param in (
            ("rate", "RATE"),
            ("stop_rate", "RATE_STOP"),
            ("limit_rate", "RATE_LIMIT"),
        ):
            if request[name] is not None:
                params[param] = float(request[name])
        if request["time_in_force"] is not None:
            params["TIME_IN_FORCE"] = request["time_in_force"]
        try:
            order = fx.create_order_request(FXCM_ORDER_TYPES[request["order_type"]], **params)
        except Exception as exc:  # the request could not even be built: nothing left us
            reason = f"FXCM refused to build the order request: {describe(exc)}"
            self._emitter.send(
                order_report_message(answer_id, custom_id, "rejected", "", [], reason)
            )
            return
        request_id = str(order.request_id)
        self._inflight[request_id] = ["submit", custom_id, [answer_id]]
        self._creating[custom_id] = request_id
        try:
            fx.session.send_request(order)
        except Exception as exc:
            del self._inflight[request_id]
            del self._creating[custom_id]
            text = f"send_request failed: {describe(exc)}"
            self._emitter.send(order_error_message(answer_id, custom_id, text, True))

    def _cancel(self, answer_id: str, custom_id: str) -> None:
        sdk, fx = self._sdk, self._fx
        rows = [r for r in fx.get_table(sdk.ForexConnect.ORDERS) if r.request_txt == custom_id]
        for row in rows:
            params = sdk.fxcorepy.O2GRequestParamsEnum
            delete = fx.create_request(
                {
                    params.COMMAND: sdk.fxcorepy.Constants.Commands.DELETE_ORDER,
                    params.ACCOUNT_ID: row.account_id,
                    params.ORDER_ID: row.order_id,
                }
            )
            self._inflight[str(delete.request_id)] = ["cancel", custom_id, []]
            fx.session.send_request(delete)
        self._emitter.send(self.report(answer_id, custom_id))

    # -- SDK news (owner thread) -----------------------------------------------------------

    def on_sdk(self, item: tuple[Any, ...]) -> None:
        if item[1] != self._generation or self._fx is None:
            return  # news of a session already given up
        what = item[2]
        if what == "table":
            custom_id, order_id, deleted_status = item[3], item[4], item[5]
            if deleted_status[:1] == "R":
                self._ended[custom_id] = (
                    "rejected",
                    order_id,
                    "FXCM rejected the order (status R)",
                )
            elif deleted_status[:1] == "C":
                self._ended[custom_id] = ("cancelled", order_id, "FXCM cancelled the order")
            elif deleted_status:
                self._ended.setdefault(custom_id, ("executed", order_id, ""))
            news = self.report("", custom_id)
            if news["state"] != "not_found":
                self._emitter.send(news)
            return
        entry = self._inflight.pop(item[3], None)
        if entry is None:
            return
        kind, custom_id, answer_ids = entry
        if kind == "cancel":
            if what == "failed":
                self._emitter.send(
                    log_message("warning", f"FXCM refused to delete {custom_id}: {item[4]}")
                )
            return
        self._creating.pop(custom_id, None)
        if what == "failed":
            self._ended[custom_id] = ("rejected", "", item[4])
        for answer_id in answer_ids:
            answer = self.report(answer_id, custom_id)
            if what == "completed" and answer["state"] == "not_found":
                # completed before the ORDERS table showed the row: FXCM holds it
                answer = order_report_message(answer_id, custom_id, "working", item[4])
            self._emitter.send(answer)

    def report(self, answer_id: str, custom_id: str) -> Message:
        """What the ORDERS, TRADES and CLOSED_TRADES tables (and the remembered ends) say."""
        sdk, fx = self._sdk, self._fx
        forex = sdk.ForexConnect
        orders = [r for r in fx.get_table(forex.ORDERS) if r.request_txt == custom_id]
        fills = []
        order_id = ""
        for trade in fx.get_table(forex.TRADES):
            if trade.open_order_request_txt == custom_id:
                order_id = str(trade.open_order_id)
                fills.append(self._fill(trade, "", trade.open_rate, trade.open_time, False))
        for closed in fx.get_table(forex.CLOSED_TRADES):
            if closed.open_order_request_txt == custom_id:
                order_id = str(closed.open_order_id)
                fills.append(self._fill(closed, "", closed.open_rate, closed.open_time, False))
                if closed.close_order_request_txt != custom_id:
                    fills.append(
                        self._fill(closed, "close:", closed.close_rate, closed.close_time, True)
                    )
        ended = self._ended.get(custom_id)
        if orders:
            state, order_id, reason = "working", str(orders[0].order_id), ""
        elif ended is not None and ended[0] in ("rejected", "cancelled"):
            state, order_id, reason = ended[0], ended[1] or order_id, ended[2]
        elif fills:
            state, reason = "filled", ""
        elif ended is not None:  # executed, its trade row not here yet
            state, order_id, reason = "working", ended[1], ""
        else:
            state, reason = "not_found", ""
        return order_report_message(answer_id, custom_id, state, order_id, fills, reason)

    def _fill(self, row: Any, prefix: str, rate: Any, moment: Any, exit_: bool) -> Message:
        side = "buy" if row.buy_sell == "B" else "sell"
        if exit_:
            side = "sell" if side == "buy" else "buy"
        fill_id = prefix + str(row.trade_id)
        return fill_message(fill_id, int(row.amount), float(rate), side, to_epoch_ms(moment), exit_)


# -- program -----------------------------------------------------------------------------------


class _Arguments(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # never exit inside argparse: report `fatal`
        raise Fatal("config", f"bad bridge arguments: {message}")


def parse_arguments(argv: list[str]) -> Any:
    parser = _Arguments(prog="bridge.py", description=f"fxcm bridge (protocol {PROTOCOL_VERSION})")
    parser.add_argument("--protocol", type=int, required=True)
    parser.add_argument("--url", required=True, help="FXCM hosts URL (Hosts.jsp)")
    parser.add_argument("--connection", required=True, choices=("Demo", "Real"))
    parser.add_argument("--chunk-minutes", type=int, default=240)
    parser.add_argument("--near-now-s", type=float, default=600.0)
    parser.add_argument("--backoff-base-s", type=float, default=1.0)
    parser.add_argument("--backoff-cap-s", type=float, default=60.0)
    parser.add_argument("--orders", action="store_true", help="serve order requests too")
    options = parser.parse_args(argv)
    if options.chunk_minutes < 1 or options.backoff_base_s <= 0:
        raise Fatal("config", "bad bridge arguments: chunk and backoff must be positive")
    if options.backoff_cap_s < options.backoff_base_s:
        raise Fatal("config", "bad bridge arguments: backoff cap below its base")
    return options


def claim_stdout() -> Any:
    """A private binary stream on the original stdout; fd 1 and sys.stdout now go to stderr."""
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb")


def load_sdk() -> tuple[Any, str]:
    """The forexconnect package and a description of which one it is."""
    import forexconnect  # type: ignore[import-not-found, unused-ignore]

    version = getattr(forexconnect, "__version__", "")
    site = os.path.dirname(os.path.dirname(os.path.abspath(forexconnect.__file__)))
    try:
        for entry in sorted(os.listdir(site)):
            if entry.startswith("forexconnect-") and entry.endswith((".dist-info", ".egg-info")):
                version = entry[len("forexconnect-") :].rsplit(".", 1)[0]
    except OSError:
        pass  # an unusual layout: the version stays unknown
    return forexconnect, "forexconnect %s" % (version or "(version unknown)")


def read_stdin(bridge: Bridge) -> None:
    """Request lines → the owner's inbox; EOF (the adapter is gone) → stop.

    Reads the raw file descriptor: a daemon thread blocked inside sys.stdin's buffered reader
    would hold its lock and abort the interpreter's shutdown.
    """
    pending = b""
    try:
        while True:
            chunk = os.read(0, 65536)
            if not chunk:
                break
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for raw in lines:
                line = raw.strip()
                if not line:
                    continue
                try:
                    bridge.inbox.put(("request", parse_request(line)))
                except RequestError as exc:
                    bridge.inbox.put(("bad_request", exc))
    except Exception:
        log.error("reading stdin failed:\n%s", traceback.format_exc())
    bridge.inbox.put(("eof",))


class _Redacting(logging.Filter):
    def __init__(self, emitter: Emitter) -> None:
        logging.Filter.__init__(self)
        self._emitter = emitter

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._emitter.redact(record.getMessage())
        record.args = None
        return True


def main(argv: list[str] | None = None) -> int:
    protocol_out = claim_stdout()
    emitter = Emitter(protocol_out)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_Redacting(emitter))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # The connector stops the bridge by closing stdin or `shutdown`; a terminal's Ctrl-C reaches
    # the whole process group and must not cut the session short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = EXIT_OK
    try:
        code = _serve(emitter, sys.argv[1:] if argv is None else argv)
    except Fatal as exc:
        log.error("fatal (%s): %s", exc.code, exc.message)
        emitter.send(fatal_message(exc.code, exc.message))
        code = EXIT_FATAL if exc.code != "internal" else EXIT_INTERNAL
    except Exception as exc:
        log.error("internal error:\n%s", traceback.format_exc())
        emitter.send(fatal_message("internal", f"bridge internal error: {describe(exc)}"))
        code = EXIT_INTERNAL
    emitter.close(timeout_s=5.0)
    return code


def _serve(emitter: Emitter, argv: list[str]) -> int:
    problem: Fatal | None = None
    try:
        options = parse_arguments(argv)
    except Fatal as exc:
        problem = exc
    sdk: Any = None
    description = ""
    if problem is None:
        try:
            sdk, description = load_sdk()
        except Exception as exc:  # ImportError, or the SDK's native libraries failing to load
            problem = Fatal(
                "sdk_missing",
                f"cannot import the forexconnect SDK under {sys.executable} ({describe(exc)}): "
                'install it there with `pip install forexconnect "numpy<1.22" "pandas<1.4"` '
                "(Python 3.7 only; see deploy/runbooks/fxcm.md)",
            )
    emitter.send(hello_message(description))
    if problem is not None:
        raise problem
    if options.protocol != PROTOCOL_VERSION:
        raise Fatal(
            "protocol",
            f"the connector speaks protocol {options.protocol}, this bridge speaks "
            f"{PROTOCOL_VERSION}: use the bridge.py that ships with the connector",
        )
    user, password = load_credentials(dict(os.environ))
    emitter.set_secrets([user, password])
    for name in (USER_ENV, PASSWORD_ENV):
        os.environ.pop(name, None)  # nothing started from here needs them
    bridge = Bridge(sdk, emitter, user, password, options)
    reader = threading.Thread(target=read_stdin, args=(bridge,), name="stdin-reader", daemon=True)
    reader.start()
    bridge.run()
    if emitter.dropped_ticks:
        log.warning(
            "%d ticks were dropped: the connector did not read fast enough", emitter.dropped_ticks
        )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
