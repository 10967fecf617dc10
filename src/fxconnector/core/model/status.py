"""Live status (`status_v2`, DESIGN §11): one field per fact, bounded in size.

The size rail (hard 8 KiB, trimming past 6.5 KiB) is applied by the status builder; these structs
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


class ProcessStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pid: Annotated[int, msgspec.Meta(ge=0)]
    started_ms: EpochMs
    symbols: list[Label]


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
    last_final_ms: dict[Label, dict[Label, OptionalMs]]
    coverage: dict[Label, Coverage]


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
    preview: PreviewStatus
    last_command: LastCommand | None
    errors: Annotated[list[ErrorEntry], msgspec.Meta(max_length=50)]
    degraded: list[Label]
    #: Absent (null) when the scheduled repair is disabled.
    repair: RepairStatus | None = None
