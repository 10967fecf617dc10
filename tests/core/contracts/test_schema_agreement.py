"""The JSON Schema files and the typed models say the same thing.

Two proofs: (1) the schema generated from each model equals the file once annotations are set
aside; (2) the reference validator (jsonschema, draft 2020-12) and our decoder accept and reject
the same payloads, valid ones generated from the models and invalid ones mutated from them.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from fxconnector.core.contracts import ContractName, load_schema
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.command import Command
from fxconnector.core.model.exec_event import ExecEvent
from fxconnector.core.model.exec_process import ExecProcessStatus
from fxconnector.core.model.intent import OrderIntent
from fxconnector.core.model.smc import SmcHint
from fxconnector.core.model.status import StatusV2, SymbolStatus
from fxconnector.core.model.tick import Tick
from fxconnector.core.validation.validator import decode_checked

MODELS: dict[ContractName, Any] = {
    ContractName.OHLCV_EVENT_V1: OhlcvEvent,
    ContractName.TICK_V1: Tick,
    ContractName.STATUS_V2: StatusV2,
    ContractName.STATUS_SYMBOL_V1: SymbolStatus,
    ContractName.COMMANDS_V1: Command,
    ContractName.INTENT_V1: OrderIntent,
    ContractName.EXEC_EVENT_V1: ExecEvent,
    ContractName.EXEC_PROCESS_V1: ExecProcessStatus,
    ContractName.SMC_HINT_V1: SmcHint,
}
ANNOTATIONS = {"title", "description", "$schema", "$id", "$comment", "examples", "discriminator"}


def normalize(node: Any, defs: dict[str, Any]) -> Any:
    """Inline $refs, drop annotations, read oneOf as anyOf, sort sets (enum, required)."""
    if isinstance(node, list):
        return [normalize(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return normalize(defs[node["$ref"].removeprefix("#/$defs/")], defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ANNOTATIONS or key == "$defs":
            continue
        if key == "oneOf":
            key = "anyOf"
        if key in ("enum", "required"):
            out[key] = sorted(value, key=repr)
        else:
            out[key] = normalize(value, defs)
    return out


def normalized_file(name: ContractName) -> Any:
    schema = load_schema(name)
    return normalize(schema, schema.get("$defs", {}))


def normalized_model(name: ContractName) -> Any:
    schema = msgspec.json.schema(MODELS[name])
    return normalize(schema, schema.get("$defs", {}))


@pytest.mark.parametrize("name", list(ContractName))
def test_schema_file_equals_schema_of_model(name: ContractName) -> None:
    assert normalized_file(name) == normalized_model(name)


@pytest.mark.parametrize("name", list(ContractName))
def test_schema_files_are_draft_2020_12_and_closed(name: ContractName) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)

    def objects(node: Any) -> list[dict[str, Any]]:
        found = []
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                found.append(node)
            for value in node.values():
                found.extend(objects(value))
        elif isinstance(node, list):
            for value in node:
                found.extend(objects(value))
        return found

    for obj in objects(schema):
        assert obj.get("additionalProperties") is False, obj.get("properties", {}).keys()


def test_every_schema_has_a_model_and_a_file() -> None:
    assert set(MODELS) == set(ContractName)


# --- the same verdicts from the reference validator and from our decoder ----------------------

symbols = st.sampled_from(["EURUSD", "USDJPY", "XAUUSD"])
ms = st.integers(min_value=0, max_value=4_102_444_799_999)
prices = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "symbol": draw(symbols),
        "tf": draw(st.sampled_from(["1m", "3m", "5m", "15m", "30m", "1h", "4h", "1d"])),
        "open_ms": draw(ms),
        "close_ms": draw(ms),
        "open": draw(prices),
        "high": draw(prices),
        "low": draw(prices),
        "close": draw(prices),
        "volume": draw(
            st.one_of(
                st.integers(min_value=0, max_value=10**9), st.floats(min_value=0, max_value=1e9)
            )
        ),
        "tick_count": draw(st.integers(min_value=0, max_value=10**9)),
        "complete": draw(st.booleans()),
        "source": draw(st.sampled_from(["history", "derived", "stream"])),
        "event_ts": draw(ms),
        "rev": draw(st.integers(min_value=0, max_value=1000)),
    }


@st.composite
def ticks(draw: st.DrawFn) -> dict[str, Any]:
    tick: dict[str, Any] = {
        "symbol": draw(symbols),
        "bid": draw(prices),
        "ask": draw(prices),
        "ts_ms": draw(ms),
    }
    if draw(st.booleans()):
        tick["bid_volume"] = draw(st.floats(min_value=0, max_value=1e9))
        tick["ask_volume"] = draw(st.floats(min_value=0, max_value=1e9))
    return tick


@st.composite
def commands(draw: st.DrawFn) -> dict[str, Any]:
    cmd = draw(
        st.sampled_from(["warmup", "backfill", "tail_guard", "republish_tail", "rebuild_derived"])
    )
    sym_list = draw(st.lists(symbols, min_size=1, max_size=3))
    args: dict[str, Any] = {
        "warmup": {"symbols": sym_list, "lookback_mins": draw(st.integers(1, 525_600))},
        "backfill": {"symbol": sym_list[0], "from_ms": draw(ms), "to_ms": draw(ms)},
        "tail_guard": {
            "symbols": sym_list,
            "window_hours": draw(st.integers(1, 744)),
            "repair": draw(st.booleans()),
        },
        "republish_tail": {
            "symbol": sym_list[0],
            "tf": "1h",
            "bars": draw(st.integers(1, 100_000)),
        },
        "rebuild_derived": {"symbol": sym_list[0], "from_ms": draw(ms), "to_ms": draw(ms)},
    }[cmd]
    return {
        "cmd": cmd,
        "req_id": draw(st.from_regex(r"\A[a-z0-9-]{1,20}\Z")),
        "ts": draw(ms),
        "args": args,
    }


MUTATIONS = st.sampled_from(["unknown_field", "drop_field", "wrong_type", "negative", "bad_enum"])


def mutate(payload: dict[str, Any], how: str, data: st.DataObject) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    keys = sorted(out)
    key = data.draw(st.sampled_from(keys))
    if how == "unknown_field":
        out["unexpected"] = 1
    elif how == "drop_field":
        del out[key]
    elif how == "wrong_type":
        out[key] = [out[key]]
    elif how == "negative":
        out[key] = -1
    else:
        out[key] = "no-such-value"
    return out


def same_verdict(name: ContractName, payload: dict[str, Any]) -> bool:
    reference = Draft202012Validator(load_schema(name)).is_valid(payload)
    ours = decode_checked(msgspec.json.encode(payload), MODELS[name]).ok
    assert reference == ours, (payload, reference, ours)
    return ours


@given(event=events(), how=MUTATIONS, data=st.data())
def test_events_get_the_same_verdict(event: dict[str, Any], how: str, data: st.DataObject) -> None:
    assert same_verdict(ContractName.OHLCV_EVENT_V1, event)
    same_verdict(ContractName.OHLCV_EVENT_V1, mutate(event, how, data))


@given(tick=ticks(), how=MUTATIONS, data=st.data())
def test_ticks_get_the_same_verdict(tick: dict[str, Any], how: str, data: st.DataObject) -> None:
    assert same_verdict(ContractName.TICK_V1, tick)
    same_verdict(ContractName.TICK_V1, mutate(tick, how, data))


@given(command=commands(), how=MUTATIONS, data=st.data())
def test_commands_get_the_same_verdict(
    command: dict[str, Any], how: str, data: st.DataObject
) -> None:
    assert same_verdict(ContractName.COMMANDS_V1, command)
    same_verdict(ContractName.COMMANDS_V1, mutate(command, how, data))
    broken_args = copy.deepcopy(command)
    broken_args["args"]["unexpected"] = True
    assert not same_verdict(ContractName.COMMANDS_V1, broken_args)


def sample_status() -> dict[str, Any]:
    return {
        "ts": 1_700_000_000_000,
        "version": "0.1.0",
        "process": {"id": "host-a:1234", "pid": 1234, "started_ms": 1_700_000_000_000},
        "market": {
            "is_open": True,
            "next_open_utc": None,
            "next_pause_utc": "2023-11-17T22:00:00Z",
            "calendar_tag": "fx_ny",
        },
        "broker": {
            "kind": "sim",
            "state": "connected",
            "last_tick_ts_ms": 1_700_000_000_000,
            "reconnects": 0,
        },
        "surface": {"state": "ok", "backlog": 0},
        "ssot": {"state": "ok"},
        "symbols": {
            "total": 2,
            "current": 1,
            "lagging": 0,
            "stalled": 1,
            "no_final": 0,
            "with_missing_minutes": 1,
            "with_underived": 0,
            "coverage": {"final": 10, "quiet": 1, "missing": 3, "closed": 0},
            "worst": [
                {
                    "symbol": "USDJPY",
                    "state": "stalled",
                    "final_lag_ms": 900_000,
                    "missing_minutes": 3,
                    "underived": 0,
                }
            ],
        },
        "preview": {"late_ticks_dropped": 0, "rejected": {"bad_price": 2}},
        "last_command": {
            "cmd": "warmup",
            "req_id": "r1",
            "state": "done",
            "started_ts": 1,
            "finished_ts": 2,
            "result": {"bars": 10},
            "progress": {"done": 10, "total": 10},
        },
        "errors": [{"ts": 1, "code": "broker.stale", "message": "no ticks for 30 s"}],
        "degraded": [],
    }


@given(how=MUTATIONS, data=st.data())
def test_status_gets_the_same_verdict(how: str, data: st.DataObject) -> None:
    status = sample_status()
    assert same_verdict(ContractName.STATUS_V2, status)
    same_verdict(ContractName.STATUS_V2, mutate(status, how, data))


def sample_symbol_status() -> dict[str, Any]:
    return {
        "ts": 1_700_000_000_000,
        "symbol": "EURUSD",
        "process_id": "host-a:1234",
        "state": "current",
        "final_lag_ms": 0,
        "last_final_ms": {"1m": 1_699_999_999_999, "1h": None},
        "last_tick_ts_ms": 1_699_999_999_000,
        "coverage": {"final": 10, "quiet": 1, "missing": 0, "closed": 0},
        "underived": 0,
    }


@given(how=MUTATIONS, data=st.data())
def test_symbol_status_gets_the_same_verdict(how: str, data: st.DataObject) -> None:
    status = sample_symbol_status()
    assert same_verdict(ContractName.STATUS_SYMBOL_V1, status)
    same_verdict(ContractName.STATUS_SYMBOL_V1, mutate(status, how, data))


@st.composite
def intents(draw: st.DrawFn) -> dict[str, Any]:
    intent: dict[str, Any] = {
        "intent_id": draw(st.from_regex(r"\A[A-Za-z0-9._:-]{1,64}\Z")),
        "trader": draw(st.sampled_from(["alice", "desk-1"])),
        "symbol": draw(symbols),
        "side": draw(st.sampled_from(["buy", "sell"])),
        "units": draw(st.integers(1, 1_000_000_000)),
        "type": draw(st.sampled_from(["market", "limit", "stop"])),
        "ts": draw(ms),
    }
    for key in ("price", "stop_loss", "take_profit"):
        if draw(st.booleans()):
            intent[key] = draw(prices)
    if draw(st.booleans()):
        intent["time_in_force"] = draw(st.sampled_from(["GTC", "IOC", "FOK"]))
    return intent


@given(intent=intents(), how=MUTATIONS, data=st.data())
def test_intents_get_the_same_verdict(
    intent: dict[str, Any], how: str, data: st.DataObject
) -> None:
    assert same_verdict(ContractName.INTENT_V1, intent)
    same_verdict(ContractName.INTENT_V1, mutate(intent, how, data))


@st.composite
def exec_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["risk", "order", "fill", "position", "trading_state"]))
    head: dict[str, Any] = {"kind": kind, "seq": draw(st.integers(1, 10**12)), "ts": draw(ms)}
    order = {
        "intent_id": "i-1",
        "trader": "alice",
        "symbol": draw(symbols),
        "side": draw(st.sampled_from(["buy", "sell"])),
        "units": draw(st.integers(1, 10**9)),
    }
    if kind == "risk":
        deny = draw(st.booleans())
        body: dict[str, Any] = {
            "intent": draw(intents()),
            "decision": "deny" if deny else "allow",
        }
        if deny:
            body["reason"] = draw(st.sampled_from(["stale_price", "max_notional"]))
            body["detail"] = "why"
    elif kind == "order":
        body = {
            **order,
            "type": draw(st.sampled_from(["market", "limit", "stop"])),
            "state": draw(st.sampled_from(["NEW", "SUBMITTED", "UNKNOWN", "FILLED"])),
            "filled_units": draw(st.integers(0, 10**9)),
            "avg_fill_price": draw(st.one_of(st.none(), prices)),
            "broker_order_id": draw(st.one_of(st.none(), st.just("B-17"))),
            "cancel_requested": draw(st.booleans()),
            "reason": "",
        }
    elif kind == "fill":
        body = {**order, "price": draw(prices), "fill_id": "F-1", "late": draw(st.booleans())}
    elif kind == "position":
        body = {
            "trader": "alice",
            "symbol": draw(symbols),
            "units": draw(st.integers(-(10**9), 10**9)),
            "avg_price": draw(st.one_of(st.none(), prices)),
            "realised_pnl": draw(st.floats(-1e9, 1e9)),
            "day_open_ms": draw(ms),
            "day_realised_pnl": draw(st.floats(-1e9, 1e9)),
        }
    else:
        body = {
            "scope": draw(st.sampled_from(["*", "alice"])),
            "state": draw(st.sampled_from(["ACTIVE", "REDUCING", "HALTED"])),
            "source": draw(st.sampled_from(["command", "auto"])),
            "reason": "operator",
        }
    return {**head, **body}


@given(event=exec_events(), how=MUTATIONS, data=st.data())
def test_exec_events_get_the_same_verdict(
    event: dict[str, Any], how: str, data: st.DataObject
) -> None:
    assert same_verdict(ContractName.EXEC_EVENT_V1, event)
    same_verdict(ContractName.EXEC_EVENT_V1, mutate(event, how, data))


def sample_hint() -> dict[str, Any]:
    return {
        "symbol": "EURUSD",
        "tf": "1m",
        "kind": "fvg_mitigated",
        "id": "EURUSD:1m:fvg_mitigated:bull:1549238400000",
        "rev": 0,
        "anchor_ts": 1_549_238_400_000,
        "confirm_ts": 1_549_238_579_999,
        "direction": "bull",
        "top": 1.1457,
        "bottom": 1.1455,
        "ref": "EURUSD:1m:fvg:bull:1549238400000",
    }


@given(how=MUTATIONS, data=st.data())
def test_hint_gets_the_same_verdict(how: str, data: st.DataObject) -> None:
    hint = sample_hint()
    assert same_verdict(ContractName.SMC_HINT_V1, hint)
    same_verdict(ContractName.SMC_HINT_V1, mutate(hint, how, data))
