"""The engine: core + journal + the real paper gateway, on real files, with a manual clock.

Transport faults are injected by wrapping the real paper gateway the way a remote broker fails:
the request reaches the books, the answer never comes back (accept-then-time-out, or a hang).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.errors import BrokerDisconnected, StoreLocked
from fxconnector.core.model.exec_event import ExecEvent, OrderState, TradingState
from fxconnector.core.model.intent import OrderType, Side
from fxconnector.execution.messages import OrderReport, SubmitOrder
from fxconnector.execution.paper import PaperRecord, Placed
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.execution.engine import ExecEngine
from fxconnector.runtime.execution.gateways.paper import PAPER_JOURNAL, PaperGateway
from fxconnector.runtime.execution.journal import Journal, exec_journal
from tests.execution.helpers import OPEN_MS, SETTINGS, intent, make_core, quote


class AcceptThenTimeOut(PaperGateway):
    """The paper books take the order; the caller sees a timeout."""

    async def submit(self, order: SubmitOrder) -> OrderReport:
        await super().submit(order)
        raise BrokerDisconnected("read timed out")


class AcceptThenHang(PaperGateway):
    """The paper books take the order; the answer never comes."""

    async def submit(self, order: SubmitOrder) -> OrderReport:
        await super().submit(order)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def engine_at(
    root: Path,
    fx_ny: CalendarProfile,
    clock: ManualClock,
    gateway: type[PaperGateway] = PaperGateway,
    published: list[ExecEvent] | None = None,
) -> ExecEngine:
    sink = published if published is not None else []

    def publish(events: Sequence[ExecEvent]) -> None:
        sink.extend(events)

    return ExecEngine(
        make_core(fx_ny),
        exec_journal(root / "exec"),
        gateway(root / "paper", clock, max_quote_age_ms=2_000),
        clock,
        on_events=publish,
        call_timeout_s=0.05,
    )


def placed(root: Path) -> list[str]:
    journal: Journal[PaperRecord] = Journal(root / "paper", PaperRecord, name=PAPER_JOURNAL)
    with journal:
        return [r.intent.intent_id for r in journal.open() if isinstance(r, Placed)]


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_a_paper_market_order_fills_and_is_journaled_and_published(
    tmp_path: Path, fx_ny: CalendarProfile
) -> None:
    published: list[ExecEvent] = []

    async def scenario() -> None:
        clock = ManualClock(OPEN_MS)
        engine = engine_at(tmp_path, fx_ny, clock, published=published)
        await engine.start(run_timers=False)
        engine.on_quote(quote())
        sub = await engine.submit(intent("m", units=1_000))
        assert sub.order is not None
        assert (sub.order.state, sub.order.avg_fill_price) == (OrderState.FILLED, 1.1002)
        await settle()
        assert engine.core.position("alice", "EURUSD").units == 1_000
        await engine.close()

    asyncio.run(scenario())
    assert [e.seq for e in published] == list(range(1, len(published) + 1))
    with exec_journal(tmp_path / "exec") as journal:
        assert journal.open() == published


def test_the_same_intent_twice_is_one_paper_order(tmp_path: Path, fx_ny: CalendarProfile) -> None:
    async def scenario() -> None:
        clock = ManualClock(OPEN_MS)
        engine = engine_at(tmp_path, fx_ny, clock)
        await engine.start(run_timers=False)
        engine.on_quote(quote())
        first = await engine.submit(intent("x"))
        second = await engine.submit(intent("x"))
        assert second.duplicate
        assert second.order == first.order
        await engine.close()
        # And again after a restart.
        engine = engine_at(tmp_path, fx_ny, clock)
        await engine.start(run_timers=False)
        third = await engine.submit(intent("x"))
        assert third.duplicate
        await engine.close()

    asyncio.run(scenario())
    assert placed(tmp_path) == ["x"]


def test_accept_then_timeout_is_unknown_then_resolved_without_a_resend(
    tmp_path: Path, fx_ny: CalendarProfile
) -> None:
    for gateway in (AcceptThenTimeOut, AcceptThenHang):
        root = tmp_path / gateway.__name__

        async def scenario(root: Path = root, gateway: type[PaperGateway] = gateway) -> None:
            clock = ManualClock(OPEN_MS)
            engine = engine_at(root, fx_ny, clock, gateway)
            await engine.start(run_timers=False)
            engine.on_quote(quote())
            sub = await engine.submit(intent("t", type=OrderType.LIMIT, price=1.09))
            # The transport failed; the follow-up query found the order working in the books.
            assert sub.order is not None
            assert sub.order.state is OrderState.ACCEPTED
            assert sub.order.broker_order_id == "P-1"
            clock.advance(100)
            engine.on_quote(quote(bid=1.0880, ask=1.0885, ts_ms=clock.now_ms()))
            await settle()
            order = engine.core.order("t")
            assert order is not None
            assert order.state is OrderState.FILLED
            await engine.close()

        asyncio.run(scenario())
        assert placed(root) == ["t"]


def test_a_crash_after_the_journal_before_the_send_never_resends(
    tmp_path: Path, fx_ny: CalendarProfile
) -> None:
    # What kill -9 leaves between append() and the gateway call: SUBMITTED, never sent.
    core = make_core(fx_ny)
    core.on_price(quote())
    with exec_journal(tmp_path / "exec") as journal:
        journal.open()
        journal.append(core.submit(intent("lost"), OPEN_MS).output.events)

    async def scenario() -> None:
        clock = ManualClock(OPEN_MS + 1)
        engine = engine_at(tmp_path, fx_ny, clock)
        await engine.start(run_timers=False)
        order = engine.core.order("lost")
        assert order is not None
        assert order.state is OrderState.SUBMITTED  # "not found" is not believed yet
        clock.set(OPEN_MS + SETTINGS.not_found_grace_ms)
        await engine.tick()
        order = engine.core.order("lost")
        assert order is not None
        assert order.state is OrderState.REJECTED
        assert "never arrived" in order.reason
        await engine.close()

    asyncio.run(scenario())
    assert placed(tmp_path) == []


def test_a_resting_order_survives_a_restart_of_both(tmp_path: Path, fx_ny: CalendarProfile) -> None:
    async def scenario() -> None:
        clock = ManualClock(OPEN_MS)
        engine = engine_at(tmp_path, fx_ny, clock)
        await engine.start(run_timers=False)
        engine.on_quote(quote())
        await engine.submit(intent("r", side=Side.SELL, type=OrderType.LIMIT, price=1.12))
        await engine.close()
        engine = engine_at(tmp_path, fx_ny, clock)
        await engine.start(run_timers=False)
        clock.advance(10)
        engine.on_quote(quote(bid=1.1200, ask=1.1202, ts_ms=clock.now_ms()))
        await settle()
        assert engine.core.position("alice", "EURUSD").units == -1_000
        await engine.set_trading_state("*", TradingState.HALTED, "end of test")
        assert engine.core.trading_state("alice") is TradingState.HALTED
        await engine.close()

    asyncio.run(scenario())


def test_cancel_through_the_engine(tmp_path: Path, fx_ny: CalendarProfile) -> None:
    async def scenario() -> None:
        clock = ManualClock(OPEN_MS)
        engine = engine_at(tmp_path, fx_ny, clock)
        await engine.start(run_timers=False)
        engine.on_quote(quote())
        await engine.submit(intent("c", type=OrderType.LIMIT, price=1.0))
        await engine.cancel("c")
        await settle()
        order = engine.core.order("c")
        assert order is not None
        assert order.state is OrderState.CANCELLED
        await engine.close()

    asyncio.run(scenario())


def test_a_second_engine_on_the_same_journal_is_refused(
    tmp_path: Path, fx_ny: CalendarProfile
) -> None:
    async def scenario() -> None:
        clock = ManualClock(OPEN_MS)
        first = engine_at(tmp_path, fx_ny, clock)
        await first.start(run_timers=False)
        second = ExecEngine(
            make_core(fx_ny),
            exec_journal(tmp_path / "exec"),
            PaperGateway(tmp_path / "other-paper", clock),
            clock,
        )
        with pytest.raises(StoreLocked):
            await second.start(run_timers=False)
        await first.close()
        # The refused engine let go of its gateway's books.
        again = PaperGateway(tmp_path / "other-paper", clock)
        await again.start()
        await again.close()

    asyncio.run(scenario())
