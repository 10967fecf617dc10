"""Fuzzing OANDA payloads (issue 11 p6): whatever the broker sends, the parser answers with domain
values that keep the contract or with BadBrokerData, never another exception.

Inputs are the real fixtures with fields replaced by nasty values (tests/fuzz_values.py), and
plain random bytes. The examples per test are Hypothesis' profile (200 by default).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.errors import BadBrokerData
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import MINUTE_MS, RANGE_END_MS
from fxconnector.runtime.ingest.broker.oanda.parse import (
    Heartbeat,
    Untradeable,
    parse_candles,
    parse_stream_line,
)
from fxconnector.runtime.ingest.broker.oanda.schemas import PriceComponent
from tests.fuzz_values import mutated, readable

FIXTURES = Path(__file__).parent / "fixtures"
STREAM = [json.loads(line) for line in (FIXTURES / "pricing_stream.jsonl").read_text().splitlines()]
CANDLES = json.loads((FIXTURES / "candles_usd_jpy_m1_bam.json").read_text())


def _encode(payload: Any) -> bytes:
    try:
        return msgspec.json.encode(payload)
    except (OverflowError, TypeError, ValueError):  # an int past 64 bits: send its text
        return json.dumps(payload).encode()


def _check_tick(tick: Tick) -> None:
    assert 0 < tick.bid < math.inf
    assert 0 < tick.ask < math.inf
    assert 0 <= tick.ts_ms < RANGE_END_MS
    for size in (tick.bid_volume, tick.ask_volume):
        assert size is msgspec.UNSET or (isinstance(size, float | int) and 0 <= size < math.inf)


def _check_final(event: OhlcvEvent, symbol: str) -> None:
    assert event.symbol == symbol
    assert event.open_ms % MINUTE_MS == 0
    assert event.close_ms == event.event_ts == event.open_ms + MINUTE_MS - 1
    assert event.complete
    assert event.source.value == "history"
    for price in (event.open, event.high, event.low, event.close):
        assert 0 < price < math.inf
    assert event.volume >= 0


@given(line=st.one_of(st.sampled_from(STREAM).flatmap(mutated), st.binary(max_size=200)))
def test_stream_lines_are_a_stream_item_or_bad_broker_data(line: Any) -> None:
    raw = line if isinstance(line, bytes) else _encode(line)
    try:
        item = parse_stream_line(raw)
    except BadBrokerData as exc:
        readable(exc)
        return
    assert isinstance(item, Tick | Heartbeat | Untradeable)
    if isinstance(item, Tick):
        _check_tick(item)


@given(
    body=st.one_of(mutated(CANDLES, max_mutations=4), st.binary(max_size=300)),
    price=st.sampled_from(["B", "A", "M"]),
)
def test_candles_are_finals_or_bad_broker_data(body: Any, price: PriceComponent) -> None:
    raw = body if isinstance(body, bytes) else _encode(body)
    try:
        events = parse_candles(raw, "USDJPY", price).bars
    except BadBrokerData as exc:
        readable(exc)
        return
    for event in events:
        _check_final(event, "USDJPY")
    opens = [event.open_ms for event in events]
    assert opens == sorted(set(opens))
