"""Fuzzing the public payload validators (issue 11 p6): any bytes give a Checked value with
problems carrying a stable code, never an exception. tests/core/contracts covers the verdicts
on well-formed JSON; this covers what is not JSON at all, or JSON of the wrong shape."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.validation.validator import (
    ErrorCode,
    validate_command,
    validate_event,
    validate_status,
    validate_tick,
)
from tests.conftest import calendar_profile
from tests.fuzz_values import json_value, mutated

TICK = {"symbol": "EURUSD", "bid": 1.1, "ask": 1.1002, "ts_ms": 1_709_733_600_123}
COMMAND = {
    "cmd": "backfill",
    "req_id": "r1",
    "ts": 1_709_733_600_000,
    "args": {"symbol": "EURUSD", "from_ms": 1_709_700_000_000, "to_ms": 1_709_733_600_000},
}
EVENT = {
    "symbol": "EURUSD",
    "tf": "1m",
    "open_ms": 1_709_733_600_000,
    "close_ms": 1_709_733_659_999,
    "open": 1.1,
    "high": 1.2,
    "low": 1.0,
    "close": 1.1,
    "volume": 3,
    "tick_count": 3,
    "complete": True,
    "source": "history",
    "event_ts": 1_709_733_659_999,
    "rev": 0,
}
CODES = set(ErrorCode)


def _payload(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    try:
        return msgspec.json.encode(item)
    except (OverflowError, TypeError, ValueError):
        return repr(item).encode()


def _calendar() -> CalendarProfile:
    return calendar_profile("fx_ny")


def _sound(checked: Any) -> None:
    assert checked.ok == (not checked.problems)
    for problem in checked.problems:
        assert problem.code in CODES
        assert problem.message
    if checked.value is None:
        assert checked.problems


anything = st.one_of(st.binary(max_size=200), json_value)


@given(data=st.one_of(anything, mutated(TICK), mutated(COMMAND), mutated(EVENT)))
def test_any_bytes_get_a_verdict_from_every_validator(data: Any) -> None:
    raw = _payload(data)
    _sound(validate_tick(raw))
    _sound(validate_command(raw))
    _sound(validate_status(raw))
    _sound(validate_event(raw, _calendar().default))
    if isinstance(data, dict):  # the already-parsed path (the control socket's)
        _sound(validate_command(data))
        _sound(validate_tick(data))
