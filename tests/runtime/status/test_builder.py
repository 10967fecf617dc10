"""status_v2: valid against its schema, one field per fact, never over 8 KiB."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.contracts import ContractName, load_schema
from fxconnector.core.coverage import CoverageCounts
from fxconnector.core.model.status import (
    BrokerState,
    ErrorEntry,
    SsotState,
    SurfaceState,
)
from fxconnector.core.validation.validator import validate_status
from fxconnector.runtime.status.builder import (
    HARD_LIMIT_BYTES,
    SOFT_LIMIT_BYTES,
    TRIMMED,
    Facts,
    StatusBuilder,
    encode_bounded,
)
from fxconnector.runtime.status.health import readiness

NOW = 1_552_082_340_000  # Fri 2019-03-08T21:59:00Z, a minute before the weekend


def facts(symbols: int = 3, errors: int = 3, message: str = "history failed") -> Facts:
    names = [f"SYM{i:03d}" for i in range(symbols)]
    return Facts(
        now_ms=NOW,
        broker_kind="sim",
        broker_state=BrokerState.CONNECTED,
        last_tick_ts_ms=NOW - 500,
        reconnects=1,
        surface_state=SurfaceState.OK,
        backlog=0,
        ssot_state=SsotState.OK,
        last_final_ms={s: {"1m": NOW - 60_001, "1h": NOW - 3_600_001, "1d": None} for s in names},
        coverage={s: CoverageCounts(closed=0, final=1400, quiet=30, missing=10) for s in names},
        late_ticks=2,
        rejected={"bad_price": 1},
        last_command=None,
        errors=[
            ErrorEntry(ts=NOW - i, code="history.failed", message=f"{message} {i}")
            for i in range(errors)
        ],
        degraded=[],
    )


def test_status_is_valid_and_describes_the_market(fx_ny: CalendarProfile) -> None:
    builder = StatusBuilder(
        version="0.1.0", pid=42, started_ms=NOW - 1000, symbols=["EURUSD"], calendar=fx_ny.default
    )
    data = encode_bounded(builder.build(facts()))
    assert validate_status(data).ok
    Draft202012Validator(load_schema(ContractName.STATUS_V2)).validate(json.loads(data))
    status = json.loads(data)
    assert status["market"] == {
        "is_open": True,
        "next_open_utc": "2019-03-10T21:00:00Z",
        "next_pause_utc": "2019-03-08T22:00:00Z",
        "calendar_tag": "fx_ny",
    }
    assert status["ssot"]["coverage"]["SYM000"]["missing"] == 10
    assert TRIMMED not in status["degraded"]


@pytest.mark.parametrize(
    ("symbols", "errors", "message"), [(3, 50, "x" * 500), (60, 5, "short"), (120, 50, "y" * 400)]
)
def test_size_rail_trims_deterministically(
    symbols: int, errors: int, message: str, fx_ny: CalendarProfile
) -> None:
    builder = StatusBuilder(
        version="0.1.0", pid=42, started_ms=NOW, symbols=["EURUSD"], calendar=fx_ny.default
    )
    status = builder.build(facts(symbols, errors, message))
    first = encode_bounded(status)
    assert len(first) <= HARD_LIMIT_BYTES
    assert first == encode_bounded(status)  # deterministic
    decoded = json.loads(first)
    if len(first) > SOFT_LIMIT_BYTES or decoded["degraded"]:
        assert TRIMMED in decoded["degraded"]
    assert validate_status(first).ok
    if errors == 50:
        # The newest errors survive trimming, the oldest go first.
        assert decoded["errors"][-1]["message"].startswith(message[:50])


def test_readiness_says_why() -> None:
    assert readiness(SsotState.LOADING, SurfaceState.OK) == (False, "ssot is loading")
    ready, why = readiness(SsotState.EMPTY, SurfaceState.OK)
    assert not ready
    assert "empty" in why
    ready, why = readiness(SsotState.OK, SurfaceState.DEGRADED)
    assert not ready
    assert "degraded" in why
    assert readiness(SsotState.OK, SurfaceState.REBUILDING)[0] is False
    assert readiness(SsotState.OK, SurfaceState.OK) == (True, "")
