"""Stand-in for `forexconnect.SessionStatusListener`: wakes login and logout on their news."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .lib import fxcorepy

if TYPE_CHECKING:
    from collections.abc import Callable

    StatusCallback = Callable[[Any, fxcorepy.O2GSessionStatus], None]

_Status = fxcorepy.AO2GSessionStatus.O2GSessionStatus


class SessionStatusListener(fxcorepy.AO2GSessionStatus):
    def __init__(
        self,
        session: fxcorepy.O2GSession,
        session_id: str | None,
        pin: str | None,
        on_status_changed_callback: StatusCallback | None = None,
    ) -> None:
        fxcorepy.AO2GSessionStatus.__init__(self)
        self._session = session
        self._session_id = session_id
        self._pin = pin
        self._event = threading.Event()
        self._callback = on_status_changed_callback
        self._connected = False
        self._disconnected = False
        self._last_error: str | None = None

    def wait_event(self) -> bool:
        return self._event.wait(30)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def disconnected(self) -> bool:
        return self._disconnected

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def reset(self) -> None:
        self._last_error = None
        self._event.clear()

    def set_callback(self, on_status_changed_callback: StatusCallback | None) -> None:
        self._callback = on_status_changed_callback

    def on_session_status_changed(self, status: fxcorepy.O2GSessionStatus) -> None:
        self._connected = status == _Status.CONNECTED
        self._disconnected = status == _Status.DISCONNECTED
        if self._callback is not None:
            self._callback(self._session, status)
        if status in (_Status.CONNECTED, _Status.DISCONNECTED):
            self._event.set()
        if status == _Status.TRADING_SESSION_REQUESTED and self._session_id != "":
            self._session.set_trading_session(self._session_id or "", self._pin or "")

    def on_login_failed(self, error: str) -> None:
        self._last_error = error
