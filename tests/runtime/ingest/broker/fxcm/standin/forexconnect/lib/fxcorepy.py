"""Stand-in for the SDK's native `fxcorepy` module: the session, tables and price history.

Follows the names, enum values and threading of ForexConnect 1.6 as its Python layer uses
them: `O2GTransport.create_session()`, `O2GSession.login(user, password, url, connection)`
returning at once while status callbacks (AO2GSessionStatus.on_session_status_changed /
on_login_failed) and table updates (AO2GTableListener.on_changed) come later from OTHER
threads, `AO2GSessionStatus.O2GSessionStatus` codes (DISCONNECTED=0 ... SESSION_LOST=6,
PRICE_SESSION_RECONNECTING=7, CONNECTED_WITH_NEED_TO_CHANGE_PASSWORD=8,
CHART_SESSION_RECONNECTING=9, as in forexconnect 1.6.43), offers rows with `instrument`
("EUR/USD"), `bid`, `ask`, `time` (a naive UTC datetime) and `row["Instrument"]` access, and a
price-history communicator whose `is_ready` the Python layer busy-waits on. The data and the
faults come from `_world.py`. Threads it starts are named `standin-sdk-*`.
"""

from __future__ import annotations

import enum
import os
import queue
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from .._world import (
    ERROR_28,
    MAX_QUOTES,
    MINUTE_MS,
    from_naive_utc,
    naive_utc,
    wall_ms,
    world,
)
from ._trading import ResponseReaderFactory, Server, Table

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable, Iterator

_POLL_S = 0.02
_READY_AFTER_S = 0.03


class O2GSessionStatus(enum.IntEnum):
    DISCONNECTED = 0
    CONNECTING = 1
    TRADING_SESSION_REQUESTED = 2
    CONNECTED = 3
    RECONNECTING = 4
    DISCONNECTING = 5
    SESSION_LOST = 6
    PRICE_SESSION_RECONNECTING = 7
    CONNECTED_WITH_NEED_TO_CHANGE_PASSWORD = 8
    CHART_SESSION_RECONNECTING = 9


class O2GTableManagerStatus(enum.IntEnum):
    TABLES_LOADING = 0
    TABLES_LOADED = 1
    TABLES_LOAD_FAILED = 2


class O2GTableManagerMode(enum.IntEnum):
    NO = 0
    YES = 1


class O2GTableType(enum.IntEnum):
    TABLE_UNKNOWN = -1
    OFFERS = 0
    ACCOUNTS = 1
    ORDERS = 2
    TRADES = 3
    CLOSED_TRADES = 4
    MESSAGES = 5
    SUMMARY = 6


class O2GTableUpdateType(enum.IntEnum):
    UPDATE_UNKNOWN = -1
    INSERT = 0
    UPDATE = 1
    DELETE = 2


class O2GTableStatus(enum.IntEnum):
    INITIAL = 0
    REFRESHING = 1
    REFRESHED = 2
    FAILED = 3


class O2GResponseType(enum.IntEnum):
    RESPONSE_UNKNOWN = -1
    TABLES_UPDATES = 0
    MARKET_DATA_SNAPSHOT = 1
    GET_ACCOUNTS = 2
    GET_OFFERS = 3
    GET_TRADES = 4
    GET_CLOSED_TRADES = 5
    GET_ORDERS = 6
    GET_MESSAGES = 7
    CREATE_ORDER_RESPONSE = 8


class O2GRequestParamsEnum(enum.Enum):
    """The request parameters the stand-in knows (a subset of the SDK's), by the SDK's names."""

    COMMAND = "Command"
    ORDER_TYPE = "OrderType"
    OFFER_ID = "OfferID"
    ACCOUNT_ID = "AccountID"
    BUY_SELL = "BuySell"
    AMOUNT = "Amount"
    RATE = "Rate"
    RATE_STOP = "RateStop"
    RATE_LIMIT = "RateLimit"
    TIME_IN_FORCE = "TimeInForce"
    CUSTOM_ID = "CustomID"
    ORDER_ID = "OrderID"
    TRADE_ID = "TradeID"
    SUBSCRIPTION_STATUS = "SubscriptionStatus"


class Constants:
    """`fxcorepy.Constants`: the values the SDK's requests and rows use."""

    BUY = "B"
    SELL = "S"

    class Commands:
        CREATE_ORDER = "CreateOrder"
        DELETE_ORDER = "DeleteOrder"
        EDIT_ORDER = "EditOrder"
        SET_SUBSCRIPTION_STATUS = "SetSubscriptionStatus"

    class Orders:
        TRUE_MARKET_OPEN = "OM"
        MARKET_OPEN = "O"
        TRUE_MARKET_CLOSE = "CM"
        LIMIT_ENTRY = "LE"
        STOP_ENTRY = "SE"
        ENTRY = "SE"


class AO2GResponseListener:
    """Base of response listeners (the SDK calls these from its own thread)."""

    def __init__(self) -> None:
        pass

    def on_request_completed(self, request_id: str, response: Any) -> None:
        pass

    def on_request_failed(self, request_id: str, error: str) -> None:
        pass

    def on_tables_updates(self, response: Any) -> None:
        pass


class O2GValueMap:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def set_string(self, param: O2GRequestParamsEnum, value: str) -> None:
        self.values[param.name] = str(value)

    def set_int(self, param: O2GRequestParamsEnum, value: int) -> None:
        self.values[param.name] = int(value)

    def set_double(self, param: O2GRequestParamsEnum, value: float) -> None:
        self.values[param.name] = float(value)

    def set_bool(self, param: O2GRequestParamsEnum, value: bool) -> None:
        self.values[param.name] = bool(value)


class O2GRequest:
    """A request: its parameters and the id its response will carry."""

    def __init__(self, request_id: str, params: dict[str, Any]) -> None:
        self.request_id = request_id
        self.params = params
        self.children_count = 0


class O2GRequestFactory:
    _lock = threading.Lock()
    _next = int(time.time()) % 100000 * 1000

    def __init__(self) -> None:
        self.last_error = ""

    def create_value_map(self) -> O2GValueMap:
        return O2GValueMap()

    def create_order_request(self, value_map: O2GValueMap) -> O2GRequest | None:
        if "COMMAND" not in value_map.values:
            self.last_error = "The command is not specified"
            return None
        with O2GRequestFactory._lock:
            O2GRequestFactory._next += 1
            request_id = str(O2GRequestFactory._next)
        return O2GRequest(request_id, dict(value_map.values))


class O2GCandleOpenPriceMode(enum.IntEnum):
    PREVIOUS_CLOSE = 0
    FIRST_TICK = 1


class O2GTimeFrameUnit(enum.IntEnum):
    TICK = 0
    MIN = 1
    HOUR = 2
    DAY = 3
    WEEK = 4
    MONTH = 5
    YEAR = 6


_Status = O2GSessionStatus


class AO2GSessionStatus:
    """Base of session status listeners (the SDK calls these from its own thread)."""

    O2GSessionStatus = O2GSessionStatus

    def __init__(self) -> None:
        pass

    def on_session_status_changed(self, status: _Status) -> None:
        pass

    def on_login_failed(self, error: str) -> None:
        pass


class AO2GTableListener:
    def __init__(self) -> None:
        pass

    def on_added(self, row_id: str, row: Any) -> None:
        pass

    def on_changed(self, row_id: str, row: Any) -> None:
        pass

    def on_deleted(self, row_id: str, row: Any) -> None:
        pass

    def on_status_changed(self, status: O2GTableStatus) -> None:
        pass


class AO2GTableManagerListener:
    def __init__(self) -> None:
        pass

    def on_status_changed(self, status: O2GTableManagerStatus, table_manager: Any) -> None:
        pass


#: Column ids of the offers table -> row attributes.
_OFFER_COLUMNS = {
    "OfferID": "offer_id",
    "Instrument": "instrument",
    "Bid": "bid",
    "Ask": "ask",
    "Time": "time",
    "Volume": "volume",
    "Digits": "digits",
    "PointSize": "point_size",
    "SubscriptionStatus": "subscription_status",
}


class O2GOfferTableRow:
    """One offers row as a snapshot of one update."""

    table_type = O2GTableType.OFFERS

    def __init__(
        self, offer_id: str, instrument: str, bid: float, ask: float, time: dt.datetime, volume: int
    ) -> None:
        self.offer_id = offer_id
        self.instrument = instrument
        self.bid = bid
        self.ask = ask
        self.time = time
        self.volume = volume
        self.digits = 3 if instrument.endswith("JPY") else 5
        self.point_size = 10.0**-self.digits
        self.subscription_status = "T"

    def __getitem__(self, column_id: str) -> Any:
        return getattr(self, _OFFER_COLUMNS[column_id])


class O2GOffersTable:
    """The offers table: iterable rows, update and status subscriptions."""

    table_type = O2GTableType.OFFERS

    def __init__(self, instruments: list[str]) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, O2GOfferTableRow] = {}
        now = wall_ms()
        for number, instrument in enumerate(instruments, 1):
            ts, bid, ask = world().feed.ticks(instrument, now - 5 * MINUTE_MS, now)
            last = (ts[-1], bid[-1], ask[-1]) if ts else (0, 0.0, 0.0)
            row = O2GOfferTableRow(str(number), instrument, last[1], last[2], naive_utc(last[0]), 0)
            self._rows[row.offer_id] = row
        self._ids = {row.instrument: row.offer_id for row in self._rows.values()}
        self._listeners: dict[O2GTableUpdateType, list[AO2GTableListener]] = {
            kind: [] for kind in O2GTableUpdateType
        }
        self._status_listeners: list[AO2GTableListener] = []

    def __iter__(self) -> Iterator[O2GOfferTableRow]:
        with self._lock:
            return iter(list(self._rows.values()))

    def __len__(self) -> int:
        return len(self._rows)

    def subscribe_update(self, update_type: O2GTableUpdateType, listener: Any) -> None:
        with self._lock:
            self._listeners[update_type].append(listener)

    def unsubscribe_update(self, update_type: O2GTableUpdateType, listener: Any) -> None:
        with self._lock:
            if listener in self._listeners[update_type]:
                self._listeners[update_type].remove(listener)

    def subscribe_status(self, listener: Any) -> None:
        with self._lock:
            self._status_listeners.append(listener)

    def unsubscribe_status(self, listener: Any) -> None:
        with self._lock:
            if listener in self._status_listeners:
                self._status_listeners.remove(listener)

    def update(self, instrument: str, bid: float, ask: float, ts_ms: int) -> None:
        """A price update: a new row snapshot, then every UPDATE listener, on this thread."""
        with self._lock:
            offer_id = self._ids.get(instrument)
            if offer_id is None:
                return
            volume = self._rows[offer_id].volume + 1
            row = O2GOfferTableRow(offer_id, instrument, bid, ask, naive_utc(ts_ms), volume)
            self._rows[offer_id] = row
            listeners = list(self._listeners[O2GTableUpdateType.UPDATE])
        for listener in listeners:
            listener.on_changed(offer_id, row)


class O2GTableManager:
    def __init__(self, instruments: list[str]) -> None:
        self.status = O2GTableManagerStatus.TABLES_LOADING
        self._offers = O2GOffersTable(instruments)
        self._tables: dict[Any, Any] = {O2GTableType.OFFERS: self._offers}
        for kind in (
            O2GTableType.ACCOUNTS,
            O2GTableType.ORDERS,
            O2GTableType.TRADES,
            O2GTableType.CLOSED_TRADES,
        ):
            self._tables[kind] = Table(kind, O2GTableUpdateType)

    def get_table(self, table_type: O2GTableType) -> Any:
        return self._tables.get(table_type)


class _EventThread:
    """One SDK thread delivering a session's callbacks in order."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="standin-sdk-session", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()


class O2GSession:
    """A trading session: login/logout run on the SDK thread and report through listeners."""

    def __init__(self) -> None:
        self._status = O2GSessionStatus.DISCONNECTED
        self._listeners: list[AO2GSessionStatus] = []
        self._table_manager: O2GTableManager | None = None
        self._table_manager_listener: AO2GTableManagerListener | None = None
        self._events = _EventThread()
        self._feeder: _Feeder | None = None
        self._response_listeners: list[AO2GResponseListener] = []
        self._server: Server | None = None
        self.request_factory = O2GRequestFactory()
        self.response_reader_factory = ResponseReaderFactory()

    @property
    def session_status(self) -> O2GSessionStatus:
        return self._status

    @property
    def table_manager(self) -> O2GTableManager | None:
        return self._table_manager

    def use_table_manager(self, mode: O2GTableManagerMode, listener: Any) -> None:
        if mode == O2GTableManagerMode.YES:
            self._table_manager = O2GTableManager(world().instruments)
            self._table_manager_listener = listener

    def subscribe_session_status(self, listener: AO2GSessionStatus) -> None:
        self._listeners.append(listener)

    def unsubscribe_session_status(self, listener: AO2GSessionStatus) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def set_trading_session(self, session_id: str, pin: str) -> None:
        pass

    def subscribe_response(self, listener: AO2GResponseListener) -> None:
        self._response_listeners.append(listener)

    def unsubscribe_response(self, listener: AO2GResponseListener) -> None:
        if listener in self._response_listeners:
            self._response_listeners.remove(listener)

    def send_request(self, request: O2GRequest) -> None:
        """Hands the request to the server and returns at once; the response comes through the
        response listeners on an SDK thread (nothing at all when the session is not up)."""
        if self._status != O2GSessionStatus.CONNECTED or self._server is None:
            return
        self._server.send(request)

    def login(self, user_id: str, password: str, url: str, connection: str) -> bool:
        """Starts logging in and returns at once; the outcome comes through the listeners."""
        if self._status != O2GSessionStatus.DISCONNECTED:
            return False
        self._events.submit(lambda: self._login(user_id, password, connection))
        return True

    def logout(self) -> None:
        self._events.submit(self._logout)

    def lose(self) -> None:
        """The server dropped the session (a fault): SESSION_LOST, and nothing more comes."""
        self._events.submit(lambda: self._set_status(O2GSessionStatus.SESSION_LOST))

    def _login(self, user_id: str, password: str, connection: str) -> None:
        self._set_status(O2GSessionStatus.CONNECTING)
        time.sleep(0.01)
        if world().fault("print_noise", False):
            print("stand-in SDK: noise on stdout")  # the fault under test
            os.write(1, b"stand-in SDK: native noise on fd 1\n")
        failure = world().login_failure(user_id, password, connection)
        if failure is None and world().fault("password_expired", False):
            # the stand-in's choice: the status, then DISCONNECTED (login raises "Not connected")
            self._set_status(O2GSessionStatus.CONNECTED_WITH_NEED_TO_CHANGE_PASSWORD)
            self._set_status(O2GSessionStatus.DISCONNECTED)
            return
        if failure is not None:
            for listener in list(self._listeners):
                listener.on_login_failed(failure)
            self._set_status(O2GSessionStatus.DISCONNECTED)
            return
        self._set_status(O2GSessionStatus.CONNECTED)
        manager = self._table_manager
        if manager is not None:
            # the trading tables are loaded before the table manager says so
            self._server = Server(
                manager._tables,
                self._events.submit,
                lambda: list(self._response_listeners),
                self.lose,
                sys.modules[__name__],
            )
            manager.status = O2GTableManagerStatus.TABLES_LOADED
            if self._table_manager_listener is not None:
                self._table_manager_listener.on_status_changed(manager.status, manager)
            self._feeder = _Feeder(self, manager._offers, self._server)
            self._feeder.start()

    def _logout(self) -> None:
        if self._status == O2GSessionStatus.DISCONNECTED:
            return
        self._set_status(O2GSessionStatus.DISCONNECTING)
        if self._feeder is not None:
            self._feeder.stop()
        self._set_status(O2GSessionStatus.DISCONNECTED)

    def _set_status(self, status: O2GSessionStatus) -> None:
        self._status = status
        for listener in list(self._listeners):
            listener.on_session_status_changed(status)


class _Feeder(threading.Thread):
    """The offers feed of one connected session, on its own SDK thread."""

    def __init__(self, session: O2GSession, table: O2GOffersTable, server: Server) -> None:
        threading.Thread.__init__(self, name="standin-sdk-offers", daemon=True)
        self._session = session
        self._table = table
        self._server = server
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        the_world = world()
        after = wall_ms()
        while not self._stopped.wait(_POLL_S):
            if the_world.session_lost_due():
                self._stopped.set()
                self._session.lose()
                return
            now = wall_ms()
            if the_world.fault("silent", False):
                after = now  # silence drops prices, it does not delay them
                continue
            for ts, instrument, bid, ask in the_world.feed.stream(after, now):
                if self._stopped.is_set():
                    return
                self._table.update(instrument, bid, ask, ts)
                self._server.on_quote(instrument, bid, ask)
            after = now


class O2GTransport:
    @staticmethod
    def create_session() -> O2GSession:
        return O2GSession()

    @staticmethod
    def set_transport_modules_path(path: str) -> None:
        pass

    @staticmethod
    def finalize_wrapper() -> None:
        pass


class O2GTimeFrame:
    def __init__(self, timeframe_id: str, unit: O2GTimeFrameUnit, size: int) -> None:
        self.id = timeframe_id
        self.unit = unit
        self.size = size


_UNITS = {
    "t": O2GTimeFrameUnit.TICK,
    "m": O2GTimeFrameUnit.MIN,
    "H": O2GTimeFrameUnit.HOUR,
    "D": O2GTimeFrameUnit.DAY,
    "W": O2GTimeFrameUnit.WEEK,
    "M": O2GTimeFrameUnit.MONTH,
}


class O2GTimeFrameFactory:
    def create(self, timeframe_id: str) -> O2GTimeFrame | None:
        unit = _UNITS.get(timeframe_id[:1])
        if unit is None or not timeframe_id[1:].isdigit():
            return None
        return O2GTimeFrame(timeframe_id, unit, int(timeframe_id[1:]))


class CandleRow:
    """One row of a history reader (the fields ForexConnect.get_history copies)."""

    def __init__(self, candle: tuple[Any, ...], bad_date: bool = False) -> None:
        self.date: dt.datetime | None = None if bad_date else naive_utc(candle[0])
        (self.bid_open, self.bid_high, self.bid_low, self.bid_close) = candle[1:5]
        (self.ask_open, self.ask_high, self.ask_low, self.ask_close) = candle[5:9]
        self.volume = candle[9]


class PriceHistoryCommunicator:
    """Serves m1 history of the stand-in's world; `is_ready` comes a moment after creation."""

    def __init__(self, session: O2GSession) -> None:
        self._session = session
        self._ready_at = time.monotonic() + _READY_AFTER_S
        self.timeframe_factory = O2GTimeFrameFactory()
        self.candle_open_price_mode = O2GCandleOpenPriceMode.PREVIOUS_CLOSE

    @property
    def is_ready(self) -> bool:
        if world().fault("history_hang", False):
            return False
        connected = self._session.session_status == O2GSessionStatus.CONNECTED
        return connected and time.monotonic() >= self._ready_at

    def get_history(
        self,
        instrument: str,
        timeframe: O2GTimeFrame,
        date_from: dt.datetime | None,
        date_to: dt.datetime | None,
        quotes_count: int,
    ) -> list[CandleRow]:
        if threading.current_thread().name.startswith("standin-sdk"):
            raise RuntimeError("get_history on an SDK callback thread: the real SDK hangs here")
        if timeframe.unit != O2GTimeFrameUnit.MIN or timeframe.size != 1:
            raise RuntimeError("the stand-in serves m1 history only")
        the_world = world()
        if instrument not in the_world.instruments:
            raise RuntimeError(f"Instrument {instrument} is not found")
        if the_world.take("history_errors"):
            raise Exception(ERROR_28)  # the SDK raises a bare Exception
        fail_from = the_world.fault("history_fail_from_ms", None)
        if (
            fail_from is not None
            and date_from is not None
            and from_naive_utc(date_from) >= fail_from
        ):
            raise Exception(ERROR_28)
        now = wall_ms()
        near_s = float(the_world.fault("history_near_now_fails_s", 0))
        if near_s and date_to is not None and from_naive_utc(date_to) > now - near_s * 1000:
            raise Exception(
                "stand-in: FXCM fails for a range ending near now (ForexConnectAPI #17)"
            )
        last = from_naive_utc(date_to) if date_to is not None else now
        first = (
            from_naive_utc(date_from) if date_from is not None else last - MAX_QUOTES * MINUTE_MS
        )
        previous_close = self.candle_open_price_mode == O2GCandleOpenPriceMode.PREVIOUS_CLOSE
        candles = the_world.candles(
            instrument,
            first - first % MINUTE_MS,
            last - last % MINUTE_MS,
            now,
            previous_close,
        )
        limit = MAX_QUOTES if quotes_count <= 0 else min(quotes_count, MAX_QUOTES)
        candles = candles[-limit:]
        if the_world.fault("history_empty", False):
            candles = []
        if the_world.fault("history_partial", False):
            candles = candles[: len(candles) // 2]
        bad_rows = set(the_world.fault("history_bad_rows", []))
        nan = float("nan")
        candles = [
            (c[0], c[1], c[2], c[3], nan, c[5], c[6], c[7], nan, c[9]) if c[0] in bad_rows else c
            for c in candles
        ]
        bad_dates = set(the_world.fault("history_bad_dates", []))
        return [CandleRow(candle, candle[0] in bad_dates) for candle in candles]


class PriceHistoryCommunicatorFactory:
    @staticmethod
    def create_communicator(session: O2GSession, cache_path: str) -> PriceHistoryCommunicator:
        return PriceHistoryCommunicator(session)
