"""The execution process's live status (`exec_process_v1`): which gateway, which trading state,
how many open orders and positions, as of `ts`.

Rules: written by `fxconnector exec` every period under `NS:exec:process` with a time to live
of a few periods, so a stopped or dead exec process disappears instead of going stale; read by
`/api/exec` and `fxconnector status`. It is a view of the journal's state, never a source of it.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from fxconnector.core.model.bar import Count, EpochMs
from fxconnector.core.model.exec_event import TradingState

Gateway = Literal["paper", "oanda", "fxcm"]
Pid = Annotated[int, msgspec.Meta(ge=1)]


class ExecProcessStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The live execution process at `ts`: its gateway, the trading state of everyone (`*`),
    the traders switched to REDUCING or HALTED on their own, its open orders (not in a terminal
    state), its open positions (non-zero units) and the journal's last `seq`."""

    ts: EpochMs
    pid: Pid
    started_ms: EpochMs
    gateway: Gateway
    trading_state: TradingState
    traders_reducing: Count
    traders_halted: Count
    open_orders: Count
    open_positions: Count
    journal_seq: Count
