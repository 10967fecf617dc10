"""`fxconnector status`'s lines from status and exec payloads (the end-to-end run is in
test_cli_cmd.py and test_exec.py)."""

from __future__ import annotations

import msgspec

from fxconnector.app.cli_status import _ago, exec_line
from fxconnector.core.model.exec_event import TradingState
from fxconnector.core.model.exec_process import ExecProcessStatus

NOW = 1_796_383_900_000


def test_the_exec_line_names_gateway_state_orders_positions_and_switched_traders() -> None:
    status = ExecProcessStatus(
        ts=NOW - 2_000, pid=77, started_ms=NOW - 60_000, gateway="paper",
        trading_state=TradingState.ACTIVE, traders_reducing=2, traders_halted=1,
        open_orders=3, open_positions=1, journal_seq=40,
    )  # fmt: skip
    assert exec_line(msgspec.to_builtins(status), NOW) == (
        "exec      paper pid 77, trading ACTIVE, 1 trader HALTED, 2 traders REDUCING; "
        "open orders 3, open positions 1, journal seq 40 (as of 2 s ago)"
    )


def test_ages_are_never_negative() -> None:
    assert _ago(NOW, NOW + 300) == "0 s ago"  # written after the command read its clock
    assert _ago(NOW, NOW - 42_000) == "42 s ago"
    assert _ago(NOW, NOW - 600_000) == "10 min ago"
    assert _ago(NOW, None) == "never"
