"""Fuzzing the FXCM bridge's JSON lines (issue 11 p6): a line is a message or msgspec.DecodeError
(which the adapter counts as a bad line); a history answer becomes valid finals or BadBrokerData.

Inputs are real protocol lines with fields replaced by nasty values (tests/fuzz_values.py), and
random bytes. The examples per test are Hypothesis' profile (200 by default).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.errors import BadBrokerData
from fxconnector.runtime.ingest.broker.fxcm import protocol as wire
from fxconnector.runtime.store import rules
from tests.fuzz_values import mutated, readable

T0 = 1_709_733_600_000  # 2024-03-06T14:00:00Z
LINES: list[dict[str, Any]] = [
    {"type": "hello", "protocol": 1, "bridge": "b", "python": "3.7", "sdk": "fc", "pid": 42},
    {"type": "tick", "symbol": "EURUSD", "bid": 1.08412, "ask": 1.08414, "ts_ms": T0 + 123},
    {
        "type": "history_result",
        "id": "h1",
        "symbol": "EURUSD",
        "bars": [
            {
                "open_ms": T0 + i * 60_000,
                "open": 1.084,
                "high": 1.0845,
                "low": 1.0838,
                "close": 1.0842,
                "volume": 37,
            }
            for i in range(3)
        ],
    },
    {"type": "history_error", "id": "h2", "symbol": "EURUSD", "message": "QuotesManager error"},
    {"type": "session", "status": "SUBSCRIBED", "detail": "", "ts_ms": T0},
    {"type": "log", "level": "info", "message": "hello"},
    {"type": "fatal", "code": "internal", "message": "boom"},
]


def _encode(payload: Any) -> bytes:
    try:
        return msgspec.json.encode(payload)
    except (OverflowError, TypeError, ValueError):
        return json.dumps(payload).encode()


@given(line=st.one_of(st.sampled_from(LINES).flatmap(mutated), st.binary(max_size=200)))
def test_a_line_is_a_message_or_a_decode_error(line: Any) -> None:
    raw = line if isinstance(line, bytes) else _encode(line)
    try:
        message = wire.decode_message(raw)
    except msgspec.DecodeError as exc:
        readable(exc)
        return
    assert isinstance(message, wire.Message)
    # A message decodes back to itself: what the adapter acts on is what the bridge wrote.
    assert wire.decode_message(wire.encode_line(message)) == message


@given(answer=mutated(LINES[2], max_mutations=4))
def test_history_bars_are_valid_finals_or_bad_broker_data(answer: Any) -> None:
    try:
        message = wire.decode_message(_encode(answer))
    except msgspec.DecodeError:
        return
    if not isinstance(message, wire.HistoryResult):
        return
    try:
        events = wire.bars_to_events(
            "EURUSD", message.bars, T0, T0 + 10 * 60_000, now_ms=T0 + 20 * 60_000
        ).bars
    except BadBrokerData as exc:
        readable(exc)
        return
    for event in events:
        assert rules.final_problem(event) is None, event
