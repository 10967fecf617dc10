"""status_v2 and status_symbol_v1: valid against their schemas, one field per fact, the summary
never over 8 KiB whatever the number of symbols, every symbol counted."""

from __future__ import annotations

import json
from dataclasses import replace

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
    SymbolState,
)
from fxconnector.core.utils.json_codec import encode
from fxconnector.core.validation.validator import validate_status
from fxconnector.runtime.status.builder import (
    HARD_LIMIT_BYTES,
    LAGGING_AFTER_MS,
    SOFT_LIMIT_BYTES,
    TRIMMED,
    WORST_SHOWN,
    Facts,
    StatusBuilder,
    SymbolFacts,
    encode_bounded,
)
from fxconnector.runtime.status.health import readiness

NOW = 1_552_082_340_000  # Fri 2019-03-08T21:59:00Z, a minute before the weekend


def symbol_facts(name: str, missing: int = 10) -> SymbolFacts:
    return SymbolFacts(
        symbol=name,
        last_final_ms={"1m": NOW - 60_001, "1h": NOW - 3_600_001, "1d": None},
        last_tick_ts_ms=NOW - 500,
        final_lag_ms=0,
        stalled=False,
        coverage=CoverageCounts(closed=0, final=1400, quiet=30, missing=missing),
    )


def facts(
    symbols: int = 3,
    errors: int = 3,
    message: str = "history failed",
    each: list[SymbolFacts] | None = None,
) -> Facts:
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
        late_ticks=2,
        rejected={"bad_price": 1},
        last_command=None,
        errors=[
            ErrorEntry(ts=NOW - i, code="history.failed", message=f"{message} {i}")
            for i in range(errors)
        ],
        degraded=[],
        symbols=[symbol_facts(name) for name in names] if each is None else each,
    )


def make_builder(fx_ny: CalendarProfile) -> StatusBuilder:
    return StatusBuilder(
        version="0.1.0",
        process_id="host-a:42",
        pid=42,
        started_ms=NOW - 1000,
        calendar=fx_ny.default,
    )


def test_status_is_valid_and_describes_the_market(fx_ny: CalendarProfile) -> None:
    builder = make_builder(fx_ny)
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
    assert status["process"] == {"id": "host-a:42", "pid": 42, "started_ms": NOW - 1000}
    assert status["symbols"]["coverage"] == {"final": 4200, "quiet": 90, "missing": 30, "closed": 0}
    assert TRIMMED not in status["degraded"]


@pytest.mark.parametrize(
    ("symbols", "errors", "message"),
    [(3, 50, "x" * 500), (60, 5, "short"), (120, 50, "y" * 400), (1000, 50, "z" * 500)],
)
def test_size_rail_trims_deterministically(
    symbols: int, errors: int, message: str, fx_ny: CalendarProfile
) -> None:
    builder = make_builder(fx_ny)
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


def thousand_symbols() -> list[SymbolFacts]:
    """1,000 symbols: 3 stalled, 5 lagging, 2 with no final yet, 7 current with missing
    minutes, 4 current with underived buckets, the rest healthy."""
    out = []
    for i in range(1000):
        name = f"S{i:03d}XX"
        each = symbol_facts(name, missing=0)
        if i < 3:
            each = replace(each, stalled=True, final_lag_ms=900_000 + i * MINUTE)
        elif i < 8:
            each = replace(each, final_lag_ms=LAGGING_AFTER_MS + i * MINUTE)
        elif i < 10:
            each = replace(each, last_final_ms={"1m": None, "1h": None}, coverage=None)
        elif i < 17:
            each = symbol_facts(name, missing=i)
        elif i < 21:
            each = replace(each, underived=2)
        out.append(each)
    return out


MINUTE = 60_000


def test_a_thousand_symbols_are_all_counted_within_the_rail(fx_ny: CalendarProfile) -> None:
    builder = make_builder(fx_ny)
    each = thousand_symbols()
    data = encode_bounded(builder.build(facts(errors=50, message="m" * 500, each=each)))
    assert len(data) <= HARD_LIMIT_BYTES
    Draft202012Validator(load_schema(ContractName.STATUS_V2)).validate(json.loads(data))
    symbols = json.loads(data)["symbols"]
    skip = ("coverage", "worst", "newest_final_ms")
    assert {k: v for k, v in symbols.items() if k not in skip} == {
        "total": 1000,
        "current": 990,
        "lagging": 5,
        "stalled": 3,
        "no_final": 2,
        "with_missing_minutes": 7,
        "with_underived": 4,
    }
    assert symbols["coverage"]["missing"] == sum(range(10, 17))
    assert symbols["coverage"]["final"] == 998 * 1400
    # Worst first: stalled (most lag first), no final, lagging (most lag first), then missing.
    worst = [(w["symbol"], w["state"]) for w in symbols["worst"]]
    assert len(worst) == WORST_SHOWN
    assert worst[:3] == [(f"S00{i}XX", "stalled") for i in (2, 1, 0)]
    assert worst[3:5] == [("S008XX", "no_final"), ("S009XX", "no_final")]
    assert worst[5:10] == [(f"S00{i}XX", "lagging") for i in (7, 6, 5, 4, 3)]


def test_a_healthy_namespace_names_no_symbol(fx_ny: CalendarProfile) -> None:
    each = [symbol_facts(f"S{i:03d}XX", missing=0) for i in range(1000)]
    status = json.loads(encode_bounded(make_builder(fx_ny).build(facts(each=each))))
    assert status["symbols"]["current"] == status["symbols"]["total"] == 1000
    assert status["symbols"]["worst"] == []


def test_a_symbol_detail_is_valid_and_says_its_state(fx_ny: CalendarProfile) -> None:
    builder = make_builder(fx_ny)
    validator = Draft202012Validator(load_schema(ContractName.STATUS_SYMBOL_V1))
    states = []
    for each in thousand_symbols()[:12]:
        detail = json.loads(encode(builder.build_symbol(NOW, each)))
        validator.validate(detail)
        assert detail["process_id"] == "host-a:42"
        assert detail["last_final_ms"] == dict(each.last_final_ms)
        states.append(detail["state"])
    assert states == ["stalled"] * 3 + ["lagging"] * 5 + ["no_final"] * 2 + ["current"] * 2
    assert SymbolFacts("X", {"1m": 1}, None, LAGGING_AFTER_MS, False).state is SymbolState.CURRENT


def test_the_newest_final_of_any_symbol_is_reported(fx_ny: CalendarProfile) -> None:
    builder = make_builder(fx_ny)
    older = replace(symbol_facts("OLDER"), last_final_ms={"1m": NOW - 180_001})
    newest = replace(symbol_facts("NEWEST"), last_final_ms={"1m": NOW - 1, "1h": NOW + 10})
    none_yet = replace(symbol_facts("NONE"), last_final_ms={"1m": None})
    status = json.loads(encode_bounded(builder.build(facts(each=[older, newest, none_yet]))))
    Draft202012Validator(load_schema(ContractName.STATUS_V2)).validate(status)
    assert status["symbols"]["newest_final_ms"] == NOW - 1  # 1m only: a 1h close is not newer
    status = json.loads(encode_bounded(builder.build(facts(each=[none_yet]))))
    assert status["symbols"]["newest_final_ms"] is None
