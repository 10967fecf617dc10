"""Live status (DESIGN §11): one field per fact, bounded in size.

Two payloads: `status_v2`, one process's summary, whose size does not grow with the number of
symbols (it counts them by state and names only the worst few), and `status_symbol_v1`, the
detail of one symbol (last finals per timeframe, coverage, lag, last tick). The size rail of the
summary (hard 8 KiB, trimming past 6.5 KiB) is applied by the status builder; these structs
only define the shape.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import msgspec

from fxconnector.core.model.bar import Count, EpochMs
from fxconnector.core.model.command import CommandName, ReqId

Label = Annotated[str, msgspec.Meta(max_length=200)]
OptionalMs = EpochMs | None


class BrokerState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    STALE = "stale"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


class SurfaceState(StrEnum):
    REBUILDING = "rebuilding"
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


class SsotState(StrEnum):
    LOADING = "loading"
    EMPTY = "empty"
    OK = "ok"
    DEGRADED = "degraded"


class CommandState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DEFERRED = "deferred"
    DONE = "done"
    FAILED = "failed"


class RepairState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # an operator command held the heavy slot; tried at the next interval


class SymbolState(StrEnum):
    """How a symbol's finals are doing (the summary counts symbols by this)."""

    CURRENT = "current"  # finals up to date (within LAGGING_AFTER_MS of open market time)
    LAGGING = "lagging"  # behind by more than that, still moving or not yet stalled
    STALLED = "stalled"  # no progress for longer than broker.finals_stall_s of open market time
    NO_FINAL = "no_final"  # no final 1m bar stored yet


#: The id of a process in status and in its status key: `HOSTNAME:PID`.
ProcessId = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern="^[A-Za-z0-9_.:-]+$")]


class ProcessStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    #: `HOSTNAME:PID`, stable for the process's life, unique across the processes (and the
    #: machines) sharing a namespace; names the process's status key `NS:status:proc:ID`.
    id: ProcessId
    pid: Annotated[int, msgspec.Meta(ge=0)]
    started_ms: EpochMs


class MarketStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    is_open: bool
    next_open_utc: Label | None
    next_pause_utc: Label | None
    calendar_tag: Label


class BrokerStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: Label
    state: BrokerState
    last_tick_ts_ms: OptionalMs
    reconnects: Count
    #: The worst-case lag of a final 1m after its minute ends, planned from the symbols and
    #: the history budget at start (core.history_plan); None when no plan applies (replay).
    final_lag_bound_s: Annotated[float, msgspec.Meta(ge=0)] | None = None


class SurfaceStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    state: SurfaceState
    backlog: Count


class Coverage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Minutes of the status window by class (DESIGN §4)."""

    final: Count
    quiet: Count
    missing: Count
    closed: Count


class SsotStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    state: SsotState


class WorstSymbol(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One of the symbols most in need of a look (its detail: `/api/status?symbol=`)."""

    symbol: Label
    state: SymbolState
    #: Open market time its proven finals trail the last fetchable minute.
    final_lag_ms: Count
    #: Missing minutes of its 24 h coverage window (0 before the first coverage pass).
    missing_minutes: Count
    #: Derived buckets of the window that should be final and are not.
    underived: Count


class SymbolsStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every symbol of the process, counted (the states add up to `total`)."""

    total: Count
    current: Count
    lagging: Count
    stalled: Count
    no_final: Count
    #: Symbols with missing minutes in their 24 h window, and with derived buckets not final.
    with_missing_minutes: Count
    with_underived: Count
    #: Minutes of the 24 h window by class, summed over every symbol.
    coverage: Coverage
    #: The unhealthy symbols, worst first (stalled, no final, lagging; then most lag, most
    #: missing minutes, most underived, name), at most 10; empty when every symbol is healthy.
    worst: Annotated[list[WorstSymbol], msgspec.Meta(max_length=10)]
    #: close_ms of the newest final 1m of any symbol (None: none yet): "closed N s ago" is
    #: `ts` (or now) minus it.
    newest_final_ms: OptionalMs = None


class PreviewStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    late_ticks_dropped: Count
    rejected: dict[Label, Count]


class Progress(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    done: Count
    total: Count


class LastCommand(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    cmd: CommandName
    req_id: ReqId
    state: CommandState
    started_ts: OptionalMs
    finished_ts: OptionalMs
    result: dict[str, Any] | None
    progress: Progress | None = None


class ErrorEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ts: EpochMs
    code: Label
    message: Annotated[str, msgspec.Meta(max_length=500)]


class RepairRun(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One scheduled repair: what it fixed and what it could not."""

    started_ms: EpochMs
    finished_ms: OptionalMs
    state: RepairState
    #: Missing minutes of the window that became final or quiet.
    fixed_minutes: Count
    #: Derived bars re-derived above them and republished (new or revised).
    republished: Count
    #: Minutes still missing in the window after the run, in all and by symbol (those with any,
    #: the first 16 by name).
    unresolved_minutes: Count
    unresolved: Annotated[dict[Label, Count], msgspec.Meta(max_length=16)]
    #: Missing minutes over the repair caps, left for the next run.
    deferred_minutes: Count
    #: History requests that failed (their minutes stay missing).
    failed_requests: Count
    detail: Label | None = None


class RepairStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The scheduled repair (`[repair]`): its settings, next and last run."""

    interval_s: Count
    window_hours: Count
    runs: Count
    next_run_ms: OptionalMs
    last_run: RepairRun | None


class StatusV2(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ts: EpochMs
    version: Label
    process: ProcessStatus
    market: MarketStatus
    broker: BrokerStatus
    surface: SurfaceStatus
    ssot: SsotStatus
    symbols: SymbolsStatus
    preview: PreviewStatus
    last_command: LastCommand | None
    errors: Annotated[list[ErrorEntry], msgspec.Meta(max_length=50)]
    degraded: list[Label]
    #: Absent (null) when the scheduled repair is disabled.
    repair: RepairStatus | None = None


class SymbolStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`status_symbol_v1`: one symbol's detail, as one process sees it."""

    ts: EpochMs
    symbol: Label
    process_id: ProcessId
    state: SymbolState
    final_lag_ms: Count
    #: close_ms of the newest final bar per timeframe (null: none yet).
    last_final_ms: dict[Label, OptionalMs]
    last_tick_ts_ms: OptionalMs
    #: Minutes of the 24 h window by class; null before the first coverage pass.
    coverage: Coverage | None
    underived: Count
