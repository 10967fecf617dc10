"""The fxcm gateway against the stand-in SDK's order side, through the real bridge process.

The bridge runs under this interpreter with the stand-in and `src` on its PYTHONPATH; the
stand-in's server keeps its books in a JSON file (FXCM's side), read here to count orders and
trades: the proof that a timeout, a late fill or a lost session never makes a second order.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fxconnector.config.secrets import Secret
from fxconnector.core.errors import BrokerDisconnected, ConfigError
from fxconnector.core.model.intent import OrderType, Side
from fxconnector.execution.messages import (
    GatewayEvent,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    ReportState,
    SubmitOrder,
)
from fxconnector.runtime.clock import SystemClock
from fxconnector.runtime.execution.gateways.fxcm import FxcmGateway
from tests.execution.helpers import intent

SRC = Path(__file__).parents[4] / "src"
STANDIN = Path(__file__).parents[2] / "ingest" / "broker" / "fxcm" / "standin"
T = TypeVar("T")
WAIT_S = 30.0


class StandIn:
    """The stand-in's environment: books and a control file of faults."""

    def __init__(self, root: Path, faults: dict[str, Any] | None = None) -> None:
        self.root = root
        self.books = root / "books.json"
        self.control = root / "control.json"
        self.control.write_text(json.dumps(faults or {}))

    def set(self, **faults: Any) -> None:
        current = json.loads(self.control.read_text())
        current.update(faults)
        temporary = self.control.with_suffix(".tmp")
        temporary.write_text(json.dumps(current))
        os.replace(temporary, self.control)

    def gateway(
        self,
        password: str = "standin",  # noqa: S107 (the stand-in's test password)
        request_timeout_s: float = 5.0,
    ) -> FxcmGateway:
        return FxcmGateway(
            python=os.environ.get("FXCM_TEST_PYTHON", "") or _python(),
            url="http://standin.invalid/Hosts.jsp",
            connection="Demo",
            user=Secret("standin"),
            password=Secret(password),
            clock=SystemClock(),
            workdir=self.root / "bridge",
            extra_env={
                "PYTHONPATH": os.pathsep.join((str(SRC), str(STANDIN))),
                "FXCM_STANDIN_BOOKS": str(self.books),
                "FXCM_STANDIN_CONTROL": str(self.control),
                "FXCM_STANDIN_TICKS_PER_MINUTE": "600",
            },
            request_timeout_s=request_timeout_s,
            connect_timeout_s=WAIT_S,
            backoff_cap_s=1.0,
        )

    def trades(self, custom_id: str) -> list[dict[str, Any]]:
        if not self.books.exists():
            return []  # the server never booked anything
        books = json.loads(self.books.read_text())
        return [t for t in books["trades"].values() if t["open_order_request_txt"] == custom_id]

    def orders(self) -> dict[str, Any]:
        books: dict[str, Any] = json.loads(self.books.read_text())["orders"]
        return books


def _python() -> str:
    import sys

    return sys.executable


async def _next_event(events: AsyncIterator[GatewayEvent], kind: type[T]) -> T:
    async def scan() -> T:
        async for event in events:
            if isinstance(event, kind):
                return event
        raise AssertionError(f"the stream ended before a {kind.__name__}")

    return await asyncio.wait_for(scan(), WAIT_S)


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    async def loop() -> None:
        while not await check():  # noqa: ASYNC110 (polls the broker, as the core's re-query does)
            await asyncio.sleep(0.05)

    await asyncio.wait_for(loop(), WAIT_S)


def run(standin: StandIn, scenario: Callable[[FxcmGateway], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        gateway = standin.gateway(**kw)
        await gateway.start()
        try:
            await scenario(gateway)
        finally:
            await gateway.close()

    asyncio.run(main())


def test_a_market_order_fills_and_a_repeat_is_the_same_order(tmp_path: Path) -> None:
    standin = StandIn(tmp_path)

    async def scenario(gateway: FxcmGateway) -> None:
        events = gateway.events()
        report = await gateway.submit(SubmitOrder(intent("fx-1", units=2_000)))
        assert report.intent_id == "fx-1"
        assert report.state in (ReportState.WORKING, ReportState.FILLED)
        fill = await _next_event(events, OrderFilled)
        assert (fill.intent_id, fill.units, fill.side) == ("fx-1", 2_000, None)
        again = await gateway.submit(SubmitOrder(intent("fx-1", units=2_000)))
        assert again.state is ReportState.FILLED
        assert [f.fill_id for f in again.fills] == [fill.fill_id]
        assert again.broker_order_id == report.broker_order_id
        queried = await gateway.query("fx-1")
        assert queried.state is ReportState.FILLED
        assert queried.fills[0].units == 2_000
        assert (await gateway.query("fx-none")).state is ReportState.NOT_FOUND

    run(standin, scenario)
    assert len(standin.trades("fx-1")) == 1


def test_a_request_fxcm_fails_is_rejected_with_its_text(tmp_path: Path) -> None:
    text = "ORA-20143: Not enough margin to open the position"
    standin = StandIn(tmp_path, {"order_reject": text})

    async def scenario(gateway: FxcmGateway) -> None:
        report = await gateway.submit(SubmitOrder(intent("fx-r")))
        assert report.state is ReportState.REJECTED
        assert report.reason == text
        assert (await gateway.query("fx-r")).state is ReportState.REJECTED

    run(standin, scenario)
    assert standin.trades("fx-r") == []


def test_no_completion_is_transient_and_the_tables_resolve_it_without_a_resend(
    tmp_path: Path,
) -> None:
    standin = StandIn(tmp_path, {"order_no_completion": True})

    async def scenario(gateway: FxcmGateway) -> None:
        with pytest.raises(BrokerDisconnected, match="no answer from FXCM"):
            await gateway.submit(SubmitOrder(intent("fx-t")))
        report = await gateway.query("fx-t")
        assert report.state is ReportState.FILLED
        # the core never resends; a submit of the same id finds the order and sends nothing
        again = await gateway.submit(SubmitOrder(intent("fx-t")))
        assert again.state is ReportState.FILLED

    run(standin, scenario, request_timeout_s=1.0)
    assert len(standin.trades("fx-t")) == 1


def test_a_late_fill_arrives_through_the_trades_table(tmp_path: Path) -> None:
    standin = StandIn(tmp_path, {"order_fill_delay_s": 0.5})

    async def scenario(gateway: FxcmGateway) -> None:
        events = gateway.events()
        report = await gateway.submit(SubmitOrder(intent("fx-l")))
        assert report.state is ReportState.WORKING
        assert report.fills == ()
        fill = await _next_event(events, OrderFilled)
        assert fill.intent_id == "fx-l"

    run(standin, scenario)
    assert len(standin.trades("fx-l")) == 1


def test_a_session_lost_mid_request_is_transient_and_resolved_after_the_relogin(
    tmp_path: Path,
) -> None:
    standin = StandIn(tmp_path)

    async def scenario(gateway: FxcmGateway) -> None:
        standin.set(order_lose_session=1)
        with pytest.raises(BrokerDisconnected, match="session"):
            await gateway.submit(SubmitOrder(intent("fx-s")))

        async def filled() -> bool:
            try:
                return (await gateway.query("fx-s")).state is ReportState.FILLED
            except BrokerDisconnected:
                return False  # still logging in again

        await _until(filled)

    run(standin, scenario)
    assert len(standin.trades("fx-s")) == 1


def test_a_limit_order_works_until_cancelled(tmp_path: Path) -> None:
    standin = StandIn(tmp_path)

    async def scenario(gateway: FxcmGateway) -> None:
        events = gateway.events()
        order = intent("fx-c", type=OrderType.LIMIT, price=0.5, side=Side.BUY)
        report = await gateway.submit(SubmitOrder(order))
        assert report.state is ReportState.WORKING
        assert report.broker_order_id
        accepted = await _next_event(events, OrderAccepted)
        assert accepted.broker_order_id == report.broker_order_id
        await gateway.cancel("fx-c")
        cancelled = await _next_event(events, OrderCancelled)
        assert cancelled.intent_id == "fx-c"
        assert (await gateway.query("fx-c")).state is ReportState.CANCELLED

    run(standin, scenario)
    assert standin.orders() == {}
    assert standin.trades("fx-c") == []


def test_refused_credentials_are_a_config_error_that_never_shows_the_password(
    tmp_path: Path,
) -> None:
    standin = StandIn(tmp_path)

    async def main() -> None:
        gateway = standin.gateway(password="s3cret-wrong")  # noqa: S106 (refused on purpose)
        with pytest.raises(ConfigError) as caught:
            await gateway.start()
        assert "s3cret-wrong" not in str(caught.value)
        assert "s3cret-wrong" not in repr(gateway)

    asyncio.run(main())
