"""Building `status_v2` (DESIGN §11) and keeping it under its size rail.

Rules: one field per fact (no mirrored fields); the encoded status is at most 8 KiB. Past a soft
6.5 KiB it is trimmed deterministically, in this order, until it fits: oldest errors first,
then long error messages, then coverage of the symbols sorted last, then every last-final
except 1m; a trimmed status says so in `degraded` (`status_trimmed`). Pure apart from encoding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.coverage import CoverageCounts
from fxconnector.core.errors import ContractViolation
from fxconnector.core.model.status import (
    BrokerState,
    BrokerStatus,
    Coverage,
    ErrorEntry,
    LastCommand,
    MarketStatus,
    PreviewStatus,
    ProcessStatus,
    RepairStatus,
    SsotState,
    SsotStatus,
    StatusV2,
    SurfaceState,
    SurfaceStatus,
)
from fxconnector.core.time_geom import iso_utc
from fxconnector.core.utils.json_codec import encode

HARD_LIMIT_BYTES = 8 * 1024
SOFT_LIMIT_BYTES = 6_656  # 6.5 KiB
TRIMMED = "status_trimmed"
MESSAGE_LIMIT = 500  # status_v2's bound on an error message


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the status reports, gathered by the composition root at one moment."""

    now_ms: int
    broker_kind: str
    broker_state: BrokerState
    last_tick_ts_ms: int | None
    reconnects: int
    surface_state: SurfaceState
    backlog: int
    ssot_state: SsotState
    last_final_ms: Mapping[str, Mapping[str, int | None]]
    coverage: Mapping[str, CoverageCounts]
    late_ticks: int
    rejected: Mapping[str, int]
    last_command: LastCommand | None
    errors: Sequence[ErrorEntry]
    degraded: Sequence[str]
    repair: RepairStatus | None = None
    final_lag_bound_s: float | None = None


class StatusBuilder:
    """Makes bounded status_v2 values for one process."""

    def __init__(
        self,
        *,
        version: str,
        pid: int,
        started_ms: int,
        symbols: Sequence[str],
        calendar: TradingCalendar,
    ) -> None:
        self._process = ProcessStatus(pid=pid, started_ms=started_ms, symbols=list(symbols))
        self._version = version
        self._calendar = calendar

    def build(self, facts: Facts) -> StatusV2:
        next_open = self._calendar.next_open(facts.now_ms)
        next_pause = self._calendar.next_pause(facts.now_ms)
        return StatusV2(
            ts=facts.now_ms,
            version=self._version,
            process=self._process,
            market=MarketStatus(
                is_open=self._calendar.is_open(facts.now_ms),
                next_open_utc=None if next_open is None else iso_utc(next_open),
                next_pause_utc=None if next_pause is None else iso_utc(next_pause),
                calendar_tag=self._calendar.tag,
            ),
            broker=BrokerStatus(
                kind=facts.broker_kind,
                state=facts.broker_state,
                last_tick_ts_ms=facts.last_tick_ts_ms,
                reconnects=facts.reconnects,
                final_lag_bound_s=facts.final_lag_bound_s,
            ),
            surface=SurfaceStatus(state=facts.surface_state, backlog=facts.backlog),
            ssot=SsotStatus(
                state=facts.ssot_state,
                last_final_ms={s: dict(tfs) for s, tfs in facts.last_final_ms.items()},
                coverage={
                    s: Coverage(final=c.final, quiet=c.quiet, missing=c.missing, closed=c.closed)
                    for s, c in facts.coverage.items()
                },
            ),
            preview=PreviewStatus(
                late_ticks_dropped=facts.late_ticks, rejected=dict(facts.rejected)
            ),
            last_command=facts.last_command,
            errors=[
                e
                if len(e.message) <= MESSAGE_LIMIT
                else msgspec.structs.replace(e, message=e.message[: MESSAGE_LIMIT - 1] + "…")
                for e in list(facts.errors)[-50:]
            ],
            degraded=list(facts.degraded),
            repair=facts.repair,
        )


def encode_bounded(status: StatusV2) -> bytes:
    """Canonical JSON of `status`, trimmed past the soft rail; never over the hard rail."""
    data = encode(status)
    if len(data) <= SOFT_LIMIT_BYTES:
        return data
    for trim in _TRIMS:
        status = trim(status)
        data = encode(status)
        if len(data) <= SOFT_LIMIT_BYTES:
            break
    if len(data) > HARD_LIMIT_BYTES:
        raise ContractViolation(f"status is {len(data)} bytes even after trimming")
    return data


def _mark(status: StatusV2, **changes: object) -> StatusV2:
    degraded = status.degraded if TRIMMED in status.degraded else [*status.degraded, TRIMMED]
    return msgspec.structs.replace(status, degraded=degraded, **changes)


def _drop_old_errors(status: StatusV2) -> StatusV2:
    return _mark(status, errors=status.errors[-5:])


def _short_messages(status: StatusV2) -> StatusV2:
    return _mark(
        status,
        errors=[msgspec.structs.replace(e, message=e.message[:120]) for e in status.errors],
    )


def _fewer_coverage(status: StatusV2) -> StatusV2:
    keep = sorted(status.ssot.coverage)[:8]
    ssot = msgspec.structs.replace(status.ssot, coverage={s: status.ssot.coverage[s] for s in keep})
    return _mark(status, ssot=ssot)


def _only_1m_finals(status: StatusV2) -> StatusV2:
    last = {
        s: {tf: v for tf, v in tfs.items() if tf == "1m"}
        for s, tfs in status.ssot.last_final_ms.items()
    }
    return _mark(status, ssot=msgspec.structs.replace(status.ssot, last_final_ms=last))


_TRIMS = (_drop_old_errors, _short_messages, _fewer_coverage, _only_1m_finals)
