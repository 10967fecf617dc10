"""Building `status_v2` and `status_symbol_v1` (DESIGN §11), the summary under its size rail.

Rules: one field per fact (no mirrored fields). The summary's size does not grow with the
number of symbols: it counts every symbol by state (`SymbolState`, decided here and only here)
and names at most `WORST_SHOWN` unhealthy ones; everything per symbol is in that symbol's
detail (`build_symbol`). The encoded summary is at most 8 KiB. Past a soft 6.5 KiB it is
trimmed deterministically, in this order, until it fits: oldest errors first, then long error
messages, then the worst-symbols list down to 3; a trimmed status says so in `degraded`
(`status_trimmed`). Pure apart from encoding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
    SymbolsStatus,
    SymbolState,
    SymbolStatus,
    WorstSymbol,
)
from fxconnector.core.time_geom import MINUTE_MS, iso_utc
from fxconnector.core.utils.json_codec import encode

HARD_LIMIT_BYTES = 8 * 1024
SOFT_LIMIT_BYTES = 6_656  # 6.5 KiB
TRIMMED = "status_trimmed"
MESSAGE_LIMIT = 500  # status_v2's bound on an error message
#: Open market time a symbol's proven finals may trail the last fetchable minute and still be
#: current: the minute being fetched now, and the one before it.
LAGGING_AFTER_MS = 2 * MINUTE_MS
WORST_SHOWN = 10
WORST_KEPT_WHEN_TRIMMED = 3
_SEVERITY = {
    SymbolState.STALLED: 0,
    SymbolState.NO_FINAL: 1,
    SymbolState.LAGGING: 2,
    SymbolState.CURRENT: 3,
}


@dataclass(frozen=True, slots=True)
class SymbolFacts:
    """What the status knows of one symbol at one moment."""

    symbol: str
    #: close_ms of the newest final per timeframe value ("1m", "1h", ...), None: none yet.
    last_final_ms: Mapping[str, int | None]
    last_tick_ts_ms: int | None
    #: Open market time the proven finals trail the last fetchable minute.
    final_lag_ms: int
    #: The pipeline calls it stalled (no progress for `broker.finals_stall_s`).
    stalled: bool
    #: The 24 h window's minutes by class; None before the first coverage pass.
    coverage: CoverageCounts | None = None
    underived: int = 0

    @property
    def state(self) -> SymbolState:
        if self.stalled:
            return SymbolState.STALLED
        if self.last_final_ms.get("1m") is None:
            return SymbolState.NO_FINAL
        if self.final_lag_ms > LAGGING_AFTER_MS:
            return SymbolState.LAGGING
        return SymbolState.CURRENT

    @property
    def missing_minutes(self) -> int:
        return 0 if self.coverage is None else self.coverage.missing

    @property
    def healthy(self) -> bool:
        return self.state is SymbolState.CURRENT and not self.missing_minutes and not self.underived


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
    late_ticks: int
    rejected: Mapping[str, int]
    last_command: LastCommand | None
    errors: Sequence[ErrorEntry]
    degraded: Sequence[str]
    repair: RepairStatus | None = None
    #: Every symbol of the process.
    symbols: Sequence[SymbolFacts] = field(default_factory=tuple)
    final_lag_bound_s: float | None = None


class StatusBuilder:
    """Makes bounded status_v2 values (and status_symbol_v1 details) for one process."""

    def __init__(
        self,
        *,
        version: str,
        process_id: str,
        pid: int,
        started_ms: int,
        calendar: TradingCalendar,
    ) -> None:
        self._process = ProcessStatus(id=process_id, pid=pid, started_ms=started_ms)
        self._version = version
        self._calendar = calendar

    @property
    def process_id(self) -> str:
        return self._process.id

    def build_symbol(self, now_ms: int, facts: SymbolFacts) -> SymbolStatus:
        """One symbol's detail (`status_symbol_v1`)."""
        c = facts.coverage
        return SymbolStatus(
            ts=now_ms,
            symbol=facts.symbol,
            process_id=self._process.id,
            state=facts.state,
            final_lag_ms=facts.final_lag_ms,
            last_final_ms=dict(facts.last_final_ms),
            last_tick_ts_ms=facts.last_tick_ts_ms,
            coverage=None
            if c is None
            else Coverage(final=c.final, quiet=c.quiet, missing=c.missing, closed=c.closed),
            underived=facts.underived,
        )

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
            ssot=SsotStatus(state=facts.ssot_state),
            symbols=summarize_symbols(facts.symbols),
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


def summarize_symbols(symbols: Sequence[SymbolFacts]) -> SymbolsStatus:
    """Every symbol counted by state, the coverage summed, the worst few named."""
    by_state = dict.fromkeys(SymbolState, 0)
    closes = [close for s in symbols if (close := s.last_final_ms.get("1m")) is not None]
    final = quiet = missing = closed = 0
    for s in symbols:
        by_state[s.state] += 1
        if s.coverage is not None:
            final += s.coverage.final
            quiet += s.coverage.quiet
            missing += s.coverage.missing
            closed += s.coverage.closed
    unhealthy = sorted(
        (s for s in symbols if not s.healthy),
        key=lambda s: (
            _SEVERITY[s.state],
            -s.final_lag_ms,
            -s.missing_minutes,
            -s.underived,
            s.symbol,
        ),
    )
    return SymbolsStatus(
        total=len(symbols),
        current=by_state[SymbolState.CURRENT],
        lagging=by_state[SymbolState.LAGGING],
        stalled=by_state[SymbolState.STALLED],
        no_final=by_state[SymbolState.NO_FINAL],
        with_missing_minutes=sum(1 for s in symbols if s.missing_minutes),
        with_underived=sum(1 for s in symbols if s.underived),
        coverage=Coverage(final=final, quiet=quiet, missing=missing, closed=closed),
        worst=[
            WorstSymbol(
                symbol=s.symbol,
                state=s.state,
                final_lag_ms=s.final_lag_ms,
                missing_minutes=s.missing_minutes,
                underived=s.underived,
            )
            for s in unhealthy[:WORST_SHOWN]
        ],
        newest_final_ms=max(closes, default=None),
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


def _fewer_worst(status: StatusV2) -> StatusV2:
    worst = status.symbols.worst[:WORST_KEPT_WHEN_TRIMMED]
    return _mark(status, symbols=msgspec.structs.replace(status.symbols, worst=worst))


_TRIMS = (_drop_old_errors, _short_messages, _fewer_worst)
