"""One bad payload per stable error code, and a clean bill for good ones."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.validation.validator import (
    ErrorCode,
    validate_command,
    validate_event,
    validate_status,
    validate_tick,
)

# The canonical example of DESIGN §3: a final EURUSD 1m bar of 2019-02-04 00:00 UTC.
FINAL: dict[str, Any] = {
    "symbol": "EURUSD",
    "tf": "1m",
    "open_ms": 1549238400000,
    "close_ms": 1549238459999,
    "open": 1.14567,
    "high": 1.14572,
    "low": 1.1456,
    "close": 1.14561,
    "volume": 112,
    "tick_count": 112,
    "complete": True,
    "source": "history",
    "event_ts": 1549238459999,
    "rev": 0,
}
PREVIEW: dict[str, Any] = {
    **FINAL,
    "complete": False,
    "source": "stream",
    "event_ts": 1549238430000,
}


def codes(payload: Any, profile: CalendarProfile, **allow: Any) -> list[ErrorCode]:
    data = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    return [p.code for p in validate_event(data, profile.default, **allow).problems]


def test_good_final_and_preview_pass(fx_ny: CalendarProfile) -> None:
    assert codes(FINAL, fx_ny) == []
    assert codes(PREVIEW, fx_ny) == []
    checked = validate_event(msgspec.json.encode(FINAL), fx_ny.default)
    assert checked.ok
    assert checked.value is not None
    assert checked.value.tf is Timeframe.M1


def test_dicts_are_checked_strictly(fx_ny: CalendarProfile) -> None:
    assert validate_event(FINAL, fx_ny.default).ok
    assert [p.code for p in validate_event({**FINAL, "open_ms": "1"}, fx_ny.default).problems] == [
        ErrorCode.WRONG_TYPE
    ]


CASES: list[tuple[ErrorCode, Any, dict[str, Any]]] = [
    (ErrorCode.MALFORMED_JSON, b'{"symbol": "EURUSD",', {}),
    (ErrorCode.UNKNOWN_FIELD, {**FINAL, "vwap": 1.1}, {}),
    (ErrorCode.MISSING_FIELD, {k: v for k, v in FINAL.items() if k != "rev"}, {}),
    (ErrorCode.WRONG_TYPE, {**FINAL, "complete": "yes"}, {}),
    (ErrorCode.OUT_OF_RANGE, {**FINAL, "low": 0.0}, {}),
    (ErrorCode.BAD_VALUE, {**FINAL, "tf": "2m"}, {}),
    (
        ErrorCode.UNALIGNED_OPEN,
        {
            **FINAL,
            "open_ms": FINAL["open_ms"] + 1000,
            "close_ms": FINAL["close_ms"] + 1000,
            "event_ts": FINAL["close_ms"] + 1000,
        },
        {},
    ),
    (
        ErrorCode.BAD_CLOSE,
        {**FINAL, "close_ms": FINAL["open_ms"] + 60_000, "event_ts": FINAL["open_ms"] + 60_000},
        {},
    ),
    (ErrorCode.OHLC_ORDER, {**FINAL, "high": 1.14500}, {}),
    (ErrorCode.FINAL_EVENT_TS, {**FINAL, "event_ts": FINAL["close_ms"] + 1}, {}),
    (ErrorCode.FINAL_SOURCE, {**FINAL, "source": "stream"}, {}),
    (ErrorCode.PREVIEW_SOURCE, {**PREVIEW, "source": "history"}, {}),
    (ErrorCode.PREVIEW_EVENT_TS, {**PREVIEW, "event_ts": FINAL["close_ms"] + 5}, {}),
    (ErrorCode.SYMBOL_NOT_ALLOWED, FINAL, {"symbols": {"GBPUSD"}}),
    (ErrorCode.TF_NOT_ALLOWED, FINAL, {"timeframes": {Timeframe.H1}}),
]


@pytest.mark.parametrize(("code", "payload", "allow"), CASES, ids=[c[0].value for c in CASES])
def test_each_code_has_a_payload_that_triggers_it(
    code: ErrorCode, payload: Any, allow: dict[str, Any], fx_ny: CalendarProfile
) -> None:
    assert codes(payload, fx_ny, **allow) == [code]


def test_every_code_is_covered() -> None:
    # The execution contracts' codes are covered in test_intent.py.
    bar_codes = {c for c in ErrorCode if not c.value.startswith(("intent.", "exec."))}
    assert {case[0] for case in CASES} == bar_codes


def test_problems_say_where_and_why(fx_ny: CalendarProfile) -> None:
    (problem,) = validate_event({**FINAL, "tf": "2m"}, fx_ny.default).problems
    assert problem.path == "$.tf"
    assert "2m" in problem.message
    (problem,) = validate_event({**FINAL, "event_ts": 1}, fx_ny.default).problems
    assert problem.path == "$.event_ts"
    assert str(FINAL["close_ms"]) in problem.message


def test_4h_alignment_follows_the_trading_day(fx_ny: CalendarProfile) -> None:
    # 2019-02-04 is winter: the trading day starts 22:00 UTC, so 4h buckets open at 02:00, ...
    open_ms = 1549245600000  # 2019-02-04T02:00:00Z
    bar = {
        **FINAL,
        "tf": "4h",
        "open_ms": open_ms,
        "close_ms": open_ms + 4 * 3_600_000 - 1,
        "event_ts": open_ms + 4 * 3_600_000 - 1,
        "source": "derived",
    }
    assert codes(bar, fx_ny) == []
    epoch_aligned = {
        **bar,
        "open_ms": open_ms - 7_200_000,
        "close_ms": bar["close_ms"] - 7_200_000,
        "event_ts": bar["event_ts"] - 7_200_000,
    }
    assert codes(epoch_aligned, fx_ny) == [ErrorCode.UNALIGNED_OPEN]


def test_ticks_commands_and_status_are_schema_checked() -> None:
    assert validate_tick(b'{"symbol":"EURUSD","bid":1.1,"ask":1.2,"ts_ms":1}').ok
    assert [p.code for p in validate_tick(b'{"symbol":"EURUSD","bid":1.1,"ts_ms":1}').problems] == [
        ErrorCode.MISSING_FIELD
    ]
    bad_cmd = validate_command(b'{"cmd":"shutdown","req_id":"a","ts":1,"args":{}}')
    assert [p.code for p in bad_cmd.problems] == [ErrorCode.BAD_VALUE]
    assert "shutdown" in bad_cmd.problems[0].message
    assert not validate_status(b"{}").ok
