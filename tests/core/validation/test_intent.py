"""Cross-field rules of order intents and execution events."""

from __future__ import annotations

from typing import Any

import pytest

from fxconnector.core.validation.intent import validate_exec_event, validate_intent
from fxconnector.core.validation.validator import ErrorCode

BASE: dict[str, Any] = {
    "intent_id": "i-1",
    "trader": "alice",
    "symbol": "EURUSD",
    "side": "buy",
    "units": 1000,
    "type": "market",
    "ts": 1_767_700_800_000,
}


INTENT_CASES: list[tuple[dict[str, Any], list[ErrorCode]]] = [
    ({}, []),
    ({"type": "limit", "price": 1.1}, []),
    ({"type": "limit"}, [ErrorCode.INTENT_PRICE_REQUIRED]),
    ({"type": "stop"}, [ErrorCode.INTENT_PRICE_REQUIRED]),
    ({"price": 1.1}, [ErrorCode.INTENT_PRICE_ON_MARKET]),
    ({"time_in_force": "GTC"}, [ErrorCode.INTENT_TIME_IN_FORCE]),
    ({"time_in_force": "IOC", "stop_loss": 1.0, "take_profit": 1.2}, []),
    ({"stop_loss": 1.2, "take_profit": 1.0}, [ErrorCode.INTENT_BRACKET_SIDE]),
    ({"side": "sell", "stop_loss": 1.2, "take_profit": 1.0}, []),
    ({"type": "limit", "price": 1.1, "stop_loss": 1.15}, [ErrorCode.INTENT_BRACKET_SIDE]),
    ({"type": "limit", "price": 1.1, "take_profit": 1.05}, [ErrorCode.INTENT_BRACKET_SIDE]),
    (
        {"side": "sell", "type": "stop", "price": 1.1, "stop_loss": 1.05, "take_profit": 1.2},
        [ErrorCode.INTENT_BRACKET_SIDE] * 3,
    ),
    ({"units": 0}, [ErrorCode.OUT_OF_RANGE]),
    ({"extra": 1}, [ErrorCode.UNKNOWN_FIELD]),
    ({"intent_id": "has space"}, [ErrorCode.BAD_VALUE]),
]


@pytest.mark.parametrize(("changes", "codes"), INTENT_CASES)
def test_intent_rules(changes: dict[str, Any], codes: list[ErrorCode]) -> None:
    checked = validate_intent({**BASE, **changes})
    assert [p.code for p in checked.problems] == codes


def test_a_risk_event_has_a_reason_exactly_when_it_denies() -> None:
    event: dict[str, Any] = {"kind": "risk", "seq": 1, "ts": 1, "intent": BASE}
    assert validate_exec_event({**event, "decision": "allow"}).ok
    assert validate_exec_event({**event, "decision": "deny", "reason": "stale_price"}).ok
    for bad in ({"decision": "deny"}, {"decision": "allow", "reason": "stale_price"}):
        checked = validate_exec_event({**event, **bad})
        assert [p.code for p in checked.problems] == [ErrorCode.EXEC_RISK_REASON]
    order = {"kind": "order", "seq": 2, "ts": 1, "state": "UNKNOWN"}
    order.update({k: BASE[k] for k in ("intent_id", "trader", "symbol", "side", "units", "type")})
    assert validate_exec_event(order).ok


def test_every_execution_code_is_covered() -> None:
    covered = {code for _, codes in INTENT_CASES for code in codes} | {ErrorCode.EXEC_RISK_REASON}
    assert {c for c in ErrorCode if c.value.startswith(("intent.", "exec."))} <= covered
