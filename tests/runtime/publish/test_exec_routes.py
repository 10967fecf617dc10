"""`/api/orders`, `/api/positions`, `/api/risk` over a real Redis written by the real exec
publisher, with events made by the real execution core; what is read back is validated."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from fxconnector.config.secrets import Secrets
from fxconnector.core.contracts import ContractName, load_schema
from fxconnector.core.model.exec_event import ALL_TRADERS, ExecEvent, TradingState
from fxconnector.core.model.exec_process import ExecProcessStatus
from fxconnector.core.model.intent import OrderIntent, OrderType, Side
from fxconnector.core.model.tick import Tick
from fxconnector.execution.core import ExecCore
from fxconnector.execution.messages import OrderAccepted, OrderFilled
from fxconnector.execution.risk.limits import RiskLimits, SymbolLimits, TraderLimits
from fxconnector.runtime.execution.publisher import ExecPublisher
from fxconnector.runtime.publish.keys import STREAM_FIELD
from fxconnector.runtime.publish.redis_connect import connect_redis
from tests.conftest import calendar_profile
from tests.redis_server import RedisServer
from tests.runtime.publish.api_harness import T0, Stack, running_stack

#: The execution routes (`exec_routes.routes`), fuzzed with the rest by test_http_api.
EXEC_PATHS = ("/api/orders", "/api/positions", "/api/risk", "/api/fills", "/api/exec")
LIMITS = SymbolLimits(
    max_units_per_order=10_000, max_open_units=50_000, max_notional=1e6, max_daily_loss=1e4
)


def trade_events(*, late_fill: bool = False) -> list[ExecEvent]:
    """Two traders' orders through the real core: one filled, one working, one denied,
    then a halt (and with `late_fill`, then the working one filled)."""
    core = ExecCore(
        RiskLimits(
            {
                name: TraderLimits({"EURUSD": LIMITS, "GBPUSD": LIMITS}, 60)
                for name in ("alice", "bob")
            }
        ),
        calendar_profile("always_open"),
    )
    now = T0
    core.on_price(Tick("EURUSD", 1.1, 1.1002, now))
    core.on_price(Tick("GBPUSD", 1.3, 1.3003, now))
    events: list[ExecEvent] = []

    def intent(intent_id: str, trader: str, symbol: str, units: int) -> OrderIntent:
        return OrderIntent(intent_id, trader, symbol, Side.BUY, units, OrderType.MARKET, now)

    events += core.submit(intent("a-1", "alice", "EURUSD", 1000), now).output.events
    events += core.on_gateway_event(
        OrderFilled("a-1", now + 1, "f-1", 1000, 1.1002, "b-1"), now + 1
    ).events
    events += core.submit(intent("b-1", "bob", "GBPUSD", 2000), now + 2).output.events
    events += core.on_gateway_event(OrderAccepted("b-1", now + 3, "b-2"), now + 3).events
    events += core.submit(intent("a-2", "alice", "EURUSD", 99_999), now + 4).output.events
    events += core.set_trading_state(ALL_TRADERS, TradingState.HALTED, "test", now + 5).events
    if late_fill:
        events += core.on_gateway_event(
            OrderFilled("b-1", now + 9, "f-2", 2000, 1.3003, "b-2"), now + 9
        ).events
    return events


def publish(redis_server: RedisServer, stack: Stack, events: list[ExecEvent]) -> int:
    async def go() -> int:
        client = connect_redis(redis_server.url, Secrets())
        try:
            publisher = ExecPublisher(client, stack.keys, maxlen=1000)
            publisher.add(events)
            return await publisher.publish()
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.fixture
def stack(redis_server: RedisServer) -> Iterator[Stack]:
    with running_stack(redis_server) as running:
        yield running


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=5) as client:
        yield client


def test_orders_positions_and_risk_are_served_from_what_exec_published(
    redis_server: RedisServer, stack: Stack, http: httpx.Client
) -> None:
    events = trade_events()
    assert publish(redis_server, stack, events) == len(events)
    validator = Draft202012Validator(load_schema(ContractName.EXEC_EVENT_V1))
    orders = http.get("/api/orders").json()["orders"]
    assert [(o["intent_id"], o["state"]) for o in orders] == [
        ("b-1", "ACCEPTED"),
        ("a-1", "FILLED"),
    ]  # newest first; the denied a-2 has no order
    for order in orders:
        validator.validate(order)
    assert orders[1]["filled_units"] == 1000
    assert orders[1]["avg_fill_price"] == 1.1002
    only_bob = http.get("/api/orders", params={"trader": "bob"}).json()["orders"]
    assert [o["intent_id"] for o in only_bob] == ["b-1"]
    filled = http.get("/api/orders", params={"state": "FILLED", "symbol": "EURUSD"}).json()
    assert [o["intent_id"] for o in filled["orders"]] == ["a-1"]
    assert len(http.get("/api/orders", params={"limit": 1}).json()["orders"]) == 1
    positions = http.get("/api/positions").json()["positions"]
    assert [(p["trader"], p["symbol"], p["units"]) for p in positions] == [
        ("alice", "EURUSD", 1000)
    ]
    validator.validate(positions[0])
    risk = http.get("/api/risk").json()["trading_states"]
    assert [(s["scope"], s["state"], s["reason"]) for s in risk] == [("*", "HALTED", "test")]
    # The stream holds every event once, with the journal's seq as the id.
    entries: Any = stack.writer.client.xrange(stack.keys.exec_events)
    assert [entry_id.decode() for entry_id, _ in entries] == [f"0-{e.seq}" for e in events]
    assert all(STREAM_FIELD.encode() in fields for _, fields in entries)


def test_a_republish_after_a_restart_adds_nothing_twice(
    redis_server: RedisServer, stack: Stack, http: httpx.Client
) -> None:
    events = trade_events()
    publish(redis_server, stack, events[:4])
    # A new publisher (a restarted exec process) holding the whole journal: only the rest is new.
    assert publish(redis_server, stack, events) == len(events) - 4
    assert stack.writer.client.xlen(stack.keys.exec_events) == len(events)
    # Redis restarted empty: everything is written again from the journal.
    redis_server.restart()
    assert publish(redis_server, stack, events) == len(events)
    assert len(http.get("/api/orders").json()["orders"]) == 2


def test_invalid_values_in_redis_are_left_out_and_counted(
    redis_server: RedisServer, stack: Stack, http: httpx.Client
) -> None:
    publish(redis_server, stack, trade_events())
    client = stack.writer.client
    client.hset(stack.keys.exec_orders, "x-1", b'{"kind":"order","seq":1}')
    client.hset(stack.keys.exec_orders, "x-2", client.hget(stack.keys.exec_orders, "a-1") or b"")
    client.hset(stack.keys.exec_positions, "bob:EURUSD", b"not json")
    before = stack.deps.rejects.count
    orders = http.get("/api/orders").json()["orders"]
    assert sorted(o["intent_id"] for o in orders) == ["a-1", "b-1"]  # x-2 holds a-1: misfiled
    assert len(http.get("/api/positions").json()["positions"]) == 1
    assert stack.deps.rejects.count == before + 3
    assert {s.code for s in stack.deps.rejects.samples} == {"redis.invalid_exec_event"}


def test_fills_are_served_from_the_events_stream_and_polled_by_seq(
    redis_server: RedisServer, stack: Stack, http: httpx.Client
) -> None:
    assert http.get("/api/fills").json() == {"fills": [], "seq": 0}
    events = trade_events()
    publish(redis_server, stack, events)
    validator = Draft202012Validator(load_schema(ContractName.EXEC_EVENT_V1))
    answer = http.get("/api/fills", params={"symbol": "EURUSD"}).json()
    assert answer["seq"] == events[-1].seq
    assert [
        (f["intent_id"], f["side"], f["units"], f["price"], f["ts"]) for f in answer["fills"]
    ] == [("a-1", "buy", 1000, 1.1002, T0 + 1)]
    validator.validate(answer["fills"][0])
    assert http.get("/api/fills", params={"symbol": "GBPUSD"}).json()["fills"] == []
    assert http.get("/api/fills", params={"trader": "bob"}).json()["fills"] == []
    # Polling from the answer's seq: nothing new, then the fills of a later journal line only.
    polled = http.get("/api/fills", params={"after_seq": answer["seq"]}).json()
    assert polled == {"fills": [], "seq": answer["seq"]}
    more = trade_events(late_fill=True)[len(events) :]
    assert more
    publish(redis_server, stack, events + more)
    polled = http.get("/api/fills", params={"after_seq": answer["seq"]}).json()
    assert [(f["intent_id"], f["symbol"], f["price"]) for f in polled["fills"]] == [
        ("b-1", "GBPUSD", 1.3003)
    ]
    assert polled["seq"] == more[-1].seq
    newest = http.get("/api/fills", params={"limit": 1}).json()["fills"]
    assert [f["intent_id"] for f in newest] == ["b-1"]
    # A page of one from the start: the seq to continue from is that fill's.
    first = http.get("/api/fills", params={"after_seq": 0, "limit": 1}).json()
    assert [f["intent_id"] for f in first["fills"]] == ["a-1"]
    assert first["seq"] == first["fills"][0]["seq"]
    # A seq beyond the stream's (a new journal): the answer's seq is lower, the page reloads.
    assert http.get("/api/fills", params={"after_seq": 10_000}).json()["seq"] == more[-1].seq


@pytest.mark.parametrize(
    ("path", "query", "status", "code"),
    [
        ("/api/orders", {"state": "DONE"}, 422, "invalid_parameter"),
        ("/api/orders", {"trader": "a b"}, 422, "invalid_parameter"),
        ("/api/orders", {"limit": "0"}, 422, "invalid_parameter"),
        ("/api/orders", {"colour": "red"}, 400, "unknown_parameter"),
        ("/api/positions", {"symbol": "EURUSD"}, 400, "unknown_parameter"),
        ("/api/risk", {"trader": "alice"}, 400, "unknown_parameter"),
        ("/api/fills", {"after_seq": "-1"}, 422, "invalid_parameter"),
        ("/api/fills", {"limit": "5001"}, 422, "invalid_parameter"),
        ("/api/fills", {"symbol": "eur"}, 422, "invalid_parameter"),
        ("/api/fills", {"state": "FILLED"}, 400, "unknown_parameter"),
        ("/api/exec", {"trader": "alice"}, 400, "unknown_parameter"),
    ],
)
def test_bad_parameters_are_json_errors(
    http: httpx.Client, path: str, query: dict[str, str], status: int, code: str
) -> None:
    answer = http.get(path, params=query)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code


def test_the_routes_are_read_only(http: httpx.Client) -> None:
    for path in EXEC_PATHS:
        assert http.post(path, json={}).status_code == 405
        assert http.get(path).status_code == 200  # empty surface: empty lists


def test_the_live_exec_process_is_served_and_goes_with_its_time_to_live(
    redis_server: RedisServer, stack: Stack, http: httpx.Client
) -> None:
    assert http.get("/api/exec").json() == {"process": None}  # none runs
    status = ExecProcessStatus(
        ts=T0, pid=4242, started_ms=T0 - 1000, gateway="paper",
        trading_state=TradingState.REDUCING, traders_reducing=0, traders_halted=1,
        open_orders=2, open_positions=1, journal_seq=17,
    )  # fmt: skip

    async def go(ttl_ms: int) -> None:
        client = connect_redis(redis_server.url, Secrets())
        try:
            await ExecPublisher(client, stack.keys, maxlen=1000).publish_process(status, ttl_ms)
        finally:
            await client.aclose()

    asyncio.run(go(60_000))
    served = http.get("/api/exec").json()["process"]
    Draft202012Validator(load_schema(ContractName.EXEC_PROCESS_V1)).validate(served)
    assert served["gateway"] == "paper"
    assert (served["trading_state"], served["open_orders"], served["journal_seq"]) == (
        "REDUCING", 2, 17,
    )  # fmt: skip
    assert 0 < (stack.writer.client.pttl(stack.keys.exec_process) or 0) <= 60_000
    # An invalid value is never served: null, and counted.
    stack.writer.client.set(stack.keys.exec_process, b'{"pid":0}')
    before = stack.deps.rejects.count
    assert http.get("/api/exec").json() == {"process": None}
    assert stack.deps.rejects.count == before + 1
