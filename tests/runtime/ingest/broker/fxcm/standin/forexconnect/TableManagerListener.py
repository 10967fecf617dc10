"""Stand-in for `forexconnect.TableManagerListener`: wakes login once the tables are loaded."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .lib import fxcorepy

if TYPE_CHECKING:
    from collections.abc import Callable

    ManagerCallback = Callable[[Any, Any, fxcorepy.O2GTableManagerStatus], None]


class TableManagerListener(fxcorepy.AO2GTableManagerListener):
    def __init__(self, on_status_changed_callback: ManagerCallback | None = None) -> None:
        fxcorepy.AO2GTableManagerListener.__init__(self)
        self._callback = on_status_changed_callback
        self._status = fxcorepy.O2GTableManagerStatus.TABLES_LOADING
        self._event = threading.Event()

    @property
    def status(self) -> fxcorepy.O2GTableManagerStatus:
        return self._status

    def set_callback(self, on_status_changed_callback: ManagerCallback | None) -> None:
        self._callback = on_status_changed_callback

    def on_status_changed(self, status: fxcorepy.O2GTableManagerStatus, table_manager: Any) -> None:
        self._status = status
        if self._callback is not None:
            self._callback(self, table_manager, status)
        if status != fxcorepy.O2GTableManagerStatus.TABLES_LOADING:
            self._event.set()

    def wait_event(self) -> bool:
        return self._event.wait(30)

    def reset(self) -> None:
        self._status = fxcorepy.O2GTableManagerStatus.TABLES_LOADING
        self._event.clear()
