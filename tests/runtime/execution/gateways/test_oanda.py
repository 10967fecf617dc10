"""OandaGateway end to end against the local v20 order peer (tests/runtime/execution/v20_peer.py).

Every test talks real HTTP to a real server on a free loopback port. Faults are the peer's:
accept-then-time-out, late fills, rejects, a broken stream, dropped heartbeats, and OANDA's
"duplicate client id refused only among pending orders". Waits are bounded polls of what the
gateway reported; no test measures a duration.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from fxconnector.config.execution import OandaExecConfig
from fxconnector.config.secrets import Secret
from fxconnector.core.errors import ConfigError, TransientIOError
from fxconnector.core.model.intent import OrderIntent, OrderType, Side, TimeInForce
from fxconnector.execution.messages import (
    GatewayEvent,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    ReportState,
    SubmitOrder,
)
from fxconnector.runtime.clock import SystemClock
from fxconnector.runtime.execution.gateways.oanda import OandaGateway
from fxconnector.runtime.ingest.broker.resilience import Backoff
from tests.runtime.execution.v20_peer import V20Peer

TOKEN = "v20-order-token-8c4e1a7f2b9d3e60-not-real"  # noqa: S105 - a test value
ACCOUNT = "101-004-7654321-001"
#: Bounded waits for evidence (a slow machine makes a test slower, never wrong).
WAIT_S = 20.0


@pytest.fixture
def peer() -> Iterator[V20Peer]:
    with V20Peer(token=TOKEN, account_id=ACCOUNT) as server:
        server.prices["EUR_USD"] = (1.10000, 1.10020)
        server.prices["USD_JPY"] = (150.000, 150.020)
        yield server


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in its own loop, bounded."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 90))

    return run


def config(peer: V20Peer, **changes: Any) -> OandaExecConfig:
    values: dict[str, Any] = {
        "account_id": ACCOUNT,
        "rest_url": peer.url,
        "stream_url": peer.url,
        "request_timeout_s": 1.0,
        "heartbeat_timeout_s": 1.0,
    }
    values.update(changes)
    return OandaExecConfig(**values)


def gateway(peer: V20Peer, token: str = TOKEN, **changes: Any) -> OandaGateway:
    return OandaGateway(
        config(peer, **changes),
        Secret(token),
        SystemClock(),
        backoff=Backoff(base_s=0.01, cap_s=0.05),
    )


def intent(
    intent_id: str,
    *,
    side: Side = Side.BUY,
    units: int = 1000,
    kind: OrderType = OrderType.MARKET,
    price: float | None = None,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    tif: TimeInForce | None = None,
) -> SubmitOrder:
    return SubmitOrder(
        OrderIntent(
            intent_id=intent_id,
            trader="alice",
            symbol="EURUSD",
            side=side,
            units=units,
            type=kind,
            ts=1_700_000_000_000,
            price=price,
            time_in_force=tif,
            stop_loss=stop_loss,
            take_profit=take_profit,
        )
    )


class Collector:
    """Drains `events()` in the background; `wait_for` polls what arrived."""

    def __init__(self, gw: OandaGateway) -> None:
        self.events: list[GatewayEvent] = []
        self._task = asyncio.create_task(self._run(gw))

    async def _run(self, gw: OandaGateway) -> None:
        async for event in gw.events():
            self.events.append(event)

    async def wait_for(self, check: Callable[[list[GatewayEvent]], bool]) -> list[GatewayEvent]:
        async with asyncio.timeout(WAIT_S):
            while not check(self.events):  # noqa: ASYNC110 - events arrive on a task, no one event
                await asyncio.sleep(0.01)
        return self.events


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not check():  # noqa: ASYNC110 - the peer's state lives in another thread
            await asyncio.sleep(0.01)


def of(events: list[GatewayEvent], kind: type[GatewayEvent], intent_id: str) -> list[Any]:
    return [e for e in events if isinstance(e, kind) and e.intent_id == intent_id]


@sync
async def test_a_market_order_fills_at_the_touch_and_the_stream_says_so(peer: V20Peer) -> None:
    gw = gateway(peer)
    await gw.start()
    seen = Collector(gw)
    try:
        report = await gw.submit(intent("m-1"))
        assert report.state is ReportState.FILLED
        assert [(f.units, f.price, f.side) for f in report.fills] == [(1000, 1.1002, None)]
        sell = await gw.submit(intent("m-2", side=Side.SELL, units=500))
        assert [(f.units, f.price) for f in sell.fills] == [(500, 1.1)]
        events = await seen.wait_for(lambda ev: len(of(ev, OrderFilled, "m-2")) == 1)
        # The stream's fill is the report's fill (same transaction id: the core applies it once).
        assert of(events, OrderFilled, "m-1")[0].fill_id == report.fills[0].fill_id
        assert of(events, OrderAccepted, "m-1")[0].broker_order_id == report.broker_order_id
        body = peer.orders_of("m-1")[0]
        assert (body["units"], body["timeInForce"], body["instrument"]) == (
            "1000",
            "FOK",
            "EUR_USD",
        )
        assert peer.orders_of("m-2")[0]["units"] == "-500"
    finally:
        await gw.close()


@sync
async def test_a_known_intent_is_never_placed_twice_though_oanda_would_take_it(
    peer: V20Peer,
) -> None:
    gw = gateway(peer)
    await gw.start()
    try:
        first = await gw.submit(intent("d-1"))
        again = await gw.submit(intent("d-1"))  # this process already posted it: a query
        assert again.state is ReportState.FILLED
        assert again.fills == first.fills
    finally:
        await gw.close()
    restarted = gateway(peer)  # a new process knows nothing: it asks OANDA first
    await restarted.start()
    try:
        third = await restarted.submit(intent("d-1"))
        assert third.state is ReportState.FILLED
        assert third.broker_order_id == first.broker_order_id
    finally:
        await restarted.close()
    assert len(peer.orders_of("d-1")) == 1
    assert peer.duplicates() == {}


def test_the_peer_takes_a_filled_orders_client_id_again_like_oanda(peer: V20Peer) -> None:
    """Why the gateway must check: a raw second POST of a filled id is a second order."""
    import httpx

    body = {
        "order": {
            "type": "MARKET",
            "instrument": "EUR_USD",
            "units": "10",
            "timeInForce": "FOK",
            "clientExtensions": {"id": "raw-1"},
        }
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{peer.url}/v3/accounts/{ACCOUNT}/orders"
    with httpx.Client() as client:
        assert client.post(url, json=body, headers=headers).status_code == 201
        assert client.post(url, json=body, headers=headers).status_code == 201
        limit = {
            "order": {
                **body["order"],
                "type": "LIMIT",
                "price": "1.00000",
                "timeInForce": "GTC",
                "clientExtensions": {"id": "raw-2"},
            }
        }
        assert client.post(url, json=limit, headers=headers).status_code == 201
        refused = client.post(url, json=limit, headers=headers)
    assert refused.status_code == 400
    assert refused.json()["orderRejectTransaction"]["rejectReason"] == (
        "CLIENT_ORDER_ID_ALREADY_EXISTS"
    )
    assert peer.duplicates() == {"raw-1": 2}


@sync
async def test_accept_then_time_out_raises_transient_and_the_query_finds_the_fill(
    peer: V20Peer,
) -> None:
    gw = gateway(peer, request_timeout_s=0.3)
    await gw.start()
    seen = Collector(gw)
    try:
        peer.hold_next()
        with pytest.raises(TransientIOError):
            await gw.submit(intent("t-1"))
        report = await gw.query("t-1")
        assert report.state is ReportState.FILLED
        assert [f.units for f in report.fills] == [1000]
        # A second submit of the id (a confused caller) places nothing.
        assert (await gw.submit(intent("t-1"))).state is ReportState.FILLED
        await seen.wait_for(lambda ev: len(of(ev, OrderFilled, "t-1")) >= 1)
    finally:
        await gw.close()
    assert len(peer.orders_of("t-1")) == 1


@sync
async def test_a_late_fill_comes_on_the_stream_after_a_working_report(peer: V20Peer) -> None:
    gw = gateway(peer)
    await gw.start()
    seen = Collector(gw)
    try:
        peer.late_fill_next()
        report = await gw.submit(intent("l-1"))
        assert report.state is ReportState.WORKING
        assert report.fills == ()
        events = await seen.wait_for(lambda ev: len(of(ev, OrderFilled, "l-1")) == 1)
        assert of(events, OrderFilled, "l-1")[0].broker_order_id == report.broker_order_id
        assert (await gw.query("l-1")).state is ReportState.FILLED
    finally:
        await gw.close()


@sync
async def test_rejects_are_the_brokers_word_and_a_missing_order_is_not_found(
    peer: V20Peer,
) -> None:
    gw = gateway(peer)
    await gw.start()
    seen = Collector(gw)
    try:
        peer.reject_next("INSUFFICIENT_MARGIN")
        report = await gw.submit(intent("r-1"))
        assert report.state is ReportState.REJECTED
        assert report.reason.startswith("INSUFFICIENT_MARGIN")
        # No order exists for a reject: the query finds the reject transaction (sinceid).
        queried = await gw.query("r-1")
        assert queried.state is ReportState.REJECTED
        assert queried.reason == "INSUFFICIENT_MARGIN"
        await seen.wait_for(lambda ev: len(of(ev, OrderRejected, "r-1")) == 1)
        assert (await gw.query("never-sent")).state is ReportState.NOT_FOUND
        precise = await gw.submit(intent("r-2", kind=OrderType.LIMIT, price=1.0000001))
        assert precise.state is ReportState.REJECTED
        assert "decimals" in precise.reason
        assert peer.orders_of("r-2") == []  # refused before sending
    finally:
        await gw.close()


@sync
async def test_a_limit_order_rests_is_cancelled_and_a_cancel_of_a_fill_is_harmless(
    peer: V20Peer,
) -> None:
    gw = gateway(peer)
    await gw.start()
    seen = Collector(gw)
    try:
        report = await gw.submit(
            intent("c-1", kind=OrderType.LIMIT, price=1.09, tif=TimeInForce.GTC)
        )
        assert report.state is ReportState.WORKING
        assert peer.orders_of("c-1")[0]["price"] == "1.09000"
        await gw.cancel("c-1")
        events = await seen.wait_for(lambda ev: len(of(ev, OrderCancelled, "c-1")) >= 1)
        assert of(events, OrderCancelled, "c-1")[0].reason == "CLIENT_REQUEST"
        assert (await gw.query("c-1")).state is ReportState.CANCELLED
        await gw.submit(intent("c-2"))
        await gw.cancel("c-2")  # already filled: OANDA refuses, nothing changes
        assert (await gw.query("c-2")).state is ReportState.FILLED
    finally:
        await gw.close()


@sync
async def test_stop_loss_and_take_profit_go_with_the_order_and_an_exit_fill_has_its_side(
    peer: V20Peer,
) -> None:
    gw = gateway(peer)
    await gw.start()
    seen = Collector(gw)
    try:
        await gw.submit(intent("b-1", stop_loss=1.09, take_profit=1.12))
        placed = peer.orders_of("b-1")[0]
        assert placed["stopLossOnFill"]["price"] == "1.09000"
        assert placed["takeProfitOnFill"]["clientExtensions"] == {"id": "b-1#tp"}
        peer.fill_pending("b-1#sl")
        events = await seen.wait_for(
            lambda ev: any(isinstance(e, OrderFilled) and e.side is Side.SELL for e in ev)
        )
        exits = [e for e in of(events, OrderFilled, "b-1") if e.side is not None]
        assert [(e.side, e.units, e.price) for e in exits] == [(Side.SELL, 1000, 1.09)]
        # The take profit was cancelled with the trade: no evidence about the intent itself.
        assert of(events, OrderCancelled, "b-1") == []
    finally:
        await gw.close()


@sync
async def test_a_broken_stream_reconnects_and_catches_up_from_the_last_transaction(
    peer: V20Peer,
) -> None:
    gw = gateway(peer)
    await gw.start()
    seen = Collector(gw)
    try:
        await until(lambda: peer.open_streams() == 1)
        peer.abort_streams()
        # Placed while nobody listens (through a second client: the stream is down).
        other = gateway(peer)
        await other.start()
        await other.submit(intent("g-1", kind=OrderType.LIMIT, price=1.05))
        await other.close()
        peer.fill_pending("g-1")
        events = await seen.wait_for(lambda ev: len(of(ev, OrderFilled, "g-1")) == 1)
        assert gw.reconnects >= 1
        assert len(of(events, OrderAccepted, "g-1")) == 1  # once, in order
    finally:
        await gw.close()


@sync
async def test_dropped_heartbeats_are_a_disconnect_and_a_heartbeat_ahead_triggers_catch_up(
    peer: V20Peer,
) -> None:
    gw = gateway(peer, heartbeat_timeout_s=0.3)
    await gw.start()
    seen = Collector(gw)
    try:
        await until(lambda: gw.heartbeats >= 1)
        peer.heartbeat_s = None  # silence: the gateway must give up on this stream
        await until(lambda: gw.reconnects >= 1)
        peer.heartbeat_s = 0.05
        other = gateway(peer)
        await other.start()
        await other.submit(intent("h-1"))
        await other.close()
        await seen.wait_for(lambda ev: len(of(ev, OrderFilled, "h-1")) == 1)
        assert gw.last_transaction_id == peer.last_id()
    finally:
        await gw.close()


@sync
async def test_a_wrong_token_is_refused_at_start_and_never_shown(peer: V20Peer) -> None:
    wrong = "v20-wrong-order-token-0000000000000000"
    gw = gateway(peer, token=wrong)
    assert wrong not in repr(gw)
    with pytest.raises(ConfigError, match="FXCONNECTOR_OANDA_TOKEN") as caught:
        await gw.start()
    assert wrong not in str(caught.value)
    await gw.close()
    with pytest.raises(ConfigError, match="token"):
        OandaGateway(config(peer), None, SystemClock())
    with pytest.raises(ConfigError, match="account"):
        OandaGateway(config(peer, account_id=""), Secret(TOKEN), SystemClock())


@sync
async def test_server_errors_and_a_dead_host_are_transient(peer: V20Peer) -> None:
    gw = gateway(peer)
    await gw.start()
    try:
        peer.fail_next(503)
        with pytest.raises(TransientIOError):
            await gw.submit(intent("e-1"))
        peer.fail_next(429)
        with pytest.raises(TransientIOError):
            await gw.query("e-1")
    finally:
        await gw.close()
    dead = gateway(peer, rest_url="http://127.0.0.1:9")
    with pytest.raises(TransientIOError):
        await dead.start()
    await dead.close()
