"""Stand-in for `forexconnect.ForexConnect`: the session class the bridge drives.

Same names, signatures and behaviour as ForexConnect 1.6.43's Python layer: `login` creates a
session, subscribes a SessionStatusListener, and waits (up to 30 s) for CONNECTED or
DISCONNECTED and then for the table manager, raising LoginFailedError with the SDK's text;
`get_table(ForexConnect.OFFERS)`; `get_history(instrument, timeframe, date_from, date_to,
quotes_count, candle_open_price_mode)` busy-waits on the communicator's `is_ready` and returns
a numpy structured array (Date M8[ns], Bid/Ask Open/High/Low/Close f8, Volume i4); `logout`
waits for DISCONNECTED. numpy is imported only by get_history.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .errors import LoginFailedError, RequestFailedError, TableManagerError, TimeFrameError
from .lib import fxcorepy
from .SessionStatusListener import SessionStatusListener
from .TableManagerListener import TableManagerListener

if TYPE_CHECKING:
    import datetime as dt

    from .SessionStatusListener import StatusCallback
    from .TableManagerListener import ManagerCallback

HISTORY_DTYPE = [
    ("Date", "M8[ns]"),
    ("BidOpen", "f8"),
    ("BidHigh", "f8"),
    ("BidLow", "f8"),
    ("BidClose", "f8"),
    ("AskOpen", "f8"),
    ("AskHigh", "f8"),
    ("AskLow", "f8"),
    ("AskClose", "f8"),
    ("Volume", "i4"),
]


class ForexConnect:
    OFFERS = fxcorepy.O2GTableType.OFFERS
    ACCOUNTS = fxcorepy.O2GTableType.ACCOUNTS
    TRADES = fxcorepy.O2GTableType.TRADES
    CLOSED_TRADES = fxcorepy.O2GTableType.CLOSED_TRADES
    ORDERS = fxcorepy.O2GTableType.ORDERS
    MESSAGES = fxcorepy.O2GTableType.MESSAGES
    SUMMARY = fxcorepy.O2GTableType.SUMMARY
    _START_URL = "http://fxcorporate.com/Hosts.jsp"

    def __init__(self) -> None:
        self._session: fxcorepy.O2GSession | None = None
        self._status_listener: SessionStatusListener | None = None
        self._table_manager_listener: TableManagerListener | None = None
        self._table_manager: fxcorepy.O2GTableManager | None = None
        self._com: fxcorepy.PriceHistoryCommunicator | None = None

    @property
    def session(self) -> fxcorepy.O2GSession | None:
        return self._session

    @property
    def table_manager(self) -> fxcorepy.O2GTableManager | None:
        return self._table_manager

    def __enter__(self) -> ForexConnect:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.logout()

    def login(
        self,
        user_id: str,
        password: str,
        url: str = _START_URL,
        connection: str = "Demo",
        session_id: str | None = None,
        pin: str | None = None,
        session_status_callback: StatusCallback | None = None,
        use_table_manager: bool = True,
        table_manager_callback: ManagerCallback | None = None,
    ) -> fxcorepy.O2GSession:
        session = fxcorepy.O2GTransport.create_session()
        self._session = session
        if use_table_manager:
            self._table_manager_listener = TableManagerListener(table_manager_callback)
            session.use_table_manager(
                fxcorepy.O2GTableManagerMode.YES, self._table_manager_listener
            )
        listener = SessionStatusListener(session, session_id, pin, session_status_callback)
        self._status_listener = listener
        session.subscribe_session_status(listener)
        listener.reset()
        if not session.login(user_id, password, url, connection):
            raise LoginFailedError("login refused to start: the session is not disconnected")
        arrived = listener.wait_event()
        self._table_manager = session.table_manager
        if not arrived:
            raise LoginFailedError("Wait timeout exceeded")
        if not listener.connected:
            raise LoginFailedError(listener.last_error or "Not connected")
        manager_listener = self._table_manager_listener
        if manager_listener is not None:
            manager_listener.wait_event()
            if manager_listener.status != fxcorepy.O2GTableManagerStatus.TABLES_LOADED:
                raise LoginFailedError("Table manager not ready")
        return session

    def logout(self) -> None:
        session, listener = self._session, self._status_listener
        if session is None or listener is None:
            return
        if session.session_status == fxcorepy.O2GSessionStatus.DISCONNECTED:
            return
        listener.reset()
        session.logout()
        listener.wait_event()
        session.unsubscribe_session_status(listener)
        self._session = None
        self._status_listener = None
        self._table_manager = None

    def set_session_status_listener(self, listener: StatusCallback | None) -> None:
        if self._status_listener is not None:
            self._status_listener.set_callback(listener)

    def get_table(self, table_type: fxcorepy.O2GTableType) -> Any:
        manager_listener = self._table_manager_listener
        if manager_listener is None:
            raise TableManagerError('Need login with flag "useTableManager"')
        if not manager_listener.wait_event():
            raise TableManagerError("Wait timeout exceeded")
        if manager_listener.status == fxcorepy.O2GTableManagerStatus.TABLES_LOAD_FAILED:
            raise TableManagerError("Cannot refresh all tables of table manager")
        assert self._session is not None
        assert self._session.table_manager is not None
        return self._session.table_manager.get_table(table_type)

    def get_history(
        self,
        instrument: str,
        timeframe: str,
        date_from: dt.datetime | None = None,
        date_to: dt.datetime | None = None,
        quotes_count: int = -1,
        candle_open_price_mode: fxcorepy.O2GCandleOpenPriceMode = (
            fxcorepy.O2GCandleOpenPriceMode.PREVIOUS_CLOSE
        ),
    ) -> Any:
        import numpy as np

        if self._com is None:
            assert self._session is not None
            self._com = fxcorepy.PriceHistoryCommunicatorFactory.create_communicator(
                self._session, "./History"
            )
        frame = self._com.timeframe_factory.create(timeframe)
        if not frame:
            raise TimeFrameError("Timeframe is incorrect")
        while not self._com.is_ready:  # the real SDK busy-waits exactly so
            pass
        self._com.candle_open_price_mode = candle_open_price_mode
        reader = self._com.get_history(instrument, frame, date_from, date_to, quotes_count)
        result = np.zeros(len(reader), np.dtype(HISTORY_DTYPE))
        for index, row in enumerate(reader):
            result[index] = (
                np.datetime64(row.date, "ns"),
                row.bid_open,
                row.bid_high,
                row.bid_low,
                row.bid_close,
                row.ask_open,
                row.ask_high,
                row.ask_low,
                row.ask_close,
                row.volume,
            )
        return result

    def create_order_request(
        self,
        order_type: str,
        command: str = fxcorepy.Constants.Commands.CREATE_ORDER,
        **kwargs: Any,
    ) -> fxcorepy.O2GRequest:
        """A CreateOrder request; keyword names are O2GRequestParamsEnum names (`OFFER_ID=`)."""
        params: dict[fxcorepy.O2GRequestParamsEnum, Any] = {
            fxcorepy.O2GRequestParamsEnum.COMMAND: command,
            fxcorepy.O2GRequestParamsEnum.ORDER_TYPE: order_type,
        }
        for name, value in kwargs.items():
            params[fxcorepy.O2GRequestParamsEnum[name]] = value
        return self.create_request(params)

    def create_request(self, params: dict[Any, Any]) -> fxcorepy.O2GRequest:
        assert self._session is not None
        factory = self._session.request_factory
        value_map = factory.create_value_map()
        for param, value in params.items():
            if isinstance(value, bool):
                value_map.set_bool(param, value)
            elif isinstance(value, int):
                value_map.set_int(param, value)
            elif isinstance(value, float):
                value_map.set_double(param, value)
            else:
                value_map.set_string(param, value)
        request = factory.create_order_request(value_map)
        if request is None:
            raise RequestFailedError(factory.last_error)
        return request

    def send_request(self, request: fxcorepy.O2GRequest) -> Any:
        """Send and wait (30 s) for the response; RequestFailedError with the server's text."""
        assert self._session is not None
        session = self._session
        done = threading.Event()
        outcome: dict[str, Any] = {}

        class _Listener(fxcorepy.AO2GResponseListener):
            def on_request_completed(self, request_id: str, response: Any) -> None:
                if request_id == request.request_id:
                    outcome["response"] = response
                    done.set()

            def on_request_failed(self, request_id: str, error: str) -> None:
                if request_id == request.request_id:
                    outcome["error"] = error
                    done.set()

        listener = _Listener()
        session.subscribe_response(listener)
        try:
            session.send_request(request)
            if not done.wait(30):
                raise RequestFailedError("Wait timeout exceeded")
        finally:
            session.unsubscribe_response(listener)
        if "error" in outcome:
            raise RequestFailedError(outcome["error"])
        return session.response_reader_factory.create_order_response_reader(outcome["response"])

    @staticmethod
    def parse_timeframe(timeframe: str) -> tuple[fxcorepy.O2GTimeFrameUnit, int]:
        frame = fxcorepy.O2GTimeFrameFactory().create(timeframe)
        if frame is None:
            raise TimeFrameError("Timeframe is incorrect")
        return frame.unit, frame.size
