"""Stand-in for `forexconnect.TableListener`: forwards table events to the given callbacks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .lib import fxcorepy

if TYPE_CHECKING:
    from collections.abc import Callable

    RowCallback = Callable[[Any, str, Any], None]
    StatusCallback = Callable[[Any, fxcorepy.O2GTableStatus], None]

_Update = fxcorepy.O2GTableUpdateType


class TableListener(fxcorepy.AO2GTableListener):
    def __init__(
        self,
        table: Any = None,
        on_changed_callback: RowCallback | None = None,
        on_added_callback: RowCallback | None = None,
        on_deleted_callback: RowCallback | None = None,
        on_status_changed_callback: StatusCallback | None = None,
    ) -> None:
        fxcorepy.AO2GTableListener.__init__(self)
        self._on_changed_callback = on_changed_callback
        self._on_added_callback = on_added_callback
        self._on_deleted_callback = on_deleted_callback
        self._on_status_changed_callback = on_status_changed_callback
        self._table = table

    def on_added(self, row_id: str, row: Any) -> None:
        if self._on_added_callback:
            self._on_added_callback(self, row_id, row)

    def on_changed(self, row_id: str, row: Any) -> None:
        if self._on_changed_callback:
            self._on_changed_callback(self, row_id, row)

    def on_deleted(self, row_id: str, row: Any) -> None:
        if self._on_deleted_callback:
            self._on_deleted_callback(self, row_id, row)

    def on_status_changed(self, status: fxcorepy.O2GTableStatus) -> None:
        if self._on_status_changed_callback:
            self._on_status_changed_callback(self, status)

    def subscribe(self, table: Any = None) -> None:
        if self._table is None:
            if table is None:
                raise ValueError("Table is not set")
            self._table = table
        for callback, kind in self._kinds():
            if callback is not None:
                self._table.subscribe_update(kind, self)
        if self._on_status_changed_callback is not None:
            self._table.subscribe_status(self)

    def unsubscribe(self) -> None:
        if self._table is None:
            return
        for callback, kind in self._kinds():
            if callback is not None:
                self._table.unsubscribe_update(kind, self)
        if self._on_status_changed_callback is not None:
            self._table.unsubscribe_status(self)

    def _kinds(self) -> list[tuple[RowCallback | None, fxcorepy.O2GTableUpdateType]]:
        return [
            (self._on_changed_callback, _Update.UPDATE),
            (self._on_deleted_callback, _Update.DELETE),
            (self._on_added_callback, _Update.INSERT),
        ]
