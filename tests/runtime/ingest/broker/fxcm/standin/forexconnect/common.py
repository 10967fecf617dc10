"""Stand-in for `forexconnect.common.Common` (the table-listener helpers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .TableListener import TableListener

if TYPE_CHECKING:
    from .TableListener import RowCallback, StatusCallback


class Common:
    @staticmethod
    def create_table_listener(
        table: Any = None,
        on_add_callback: RowCallback | None = None,
        on_delete_callback: RowCallback | None = None,
        on_change_callback: RowCallback | None = None,
        on_status_change_callback: StatusCallback | None = None,
    ) -> TableListener:
        return TableListener(
            table,
            on_change_callback,
            on_add_callback,
            on_delete_callback,
            on_status_change_callback,
        )

    @staticmethod
    def subscribe_table_updates(
        table: Any = None,
        on_add_callback: RowCallback | None = None,
        on_delete_callback: RowCallback | None = None,
        on_change_callback: RowCallback | None = None,
        on_status_change_callback: StatusCallback | None = None,
    ) -> TableListener:
        listener = Common.create_table_listener(
            table,
            on_add_callback,
            on_delete_callback,
            on_change_callback,
            on_status_change_callback,
        )
        listener.subscribe()
        return listener
