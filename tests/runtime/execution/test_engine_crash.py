"""kill -9 of a real execution process (engine + journal + paper gateway) at random points, then
recovery: 0 duplicate orders, 0 lost intents, every doubt resolved, positions reconciled.

The child is the exec write path end to end: it starts the engine (replay, recover), retries the
intent it was sending when the previous child died (a client that never got an answer sends the
same intent again), then submits market orders in a loop, printing each intent once `submit`
returned. The test SIGKILLs it after a random number of answers, several times, then recovers in
process past every timeout and checks the paper books (the "broker") against the core.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Final

from fxconnector.core.model.exec_event import OrderState
from fxconnector.execution.messages import ReportState
from fxconnector.execution.paper import PaperBroker, PaperRecord, Placed
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.execution.engine import ExecEngine
from fxconnector.runtime.execution.gateways.paper import PAPER_JOURNAL, PaperGateway
from fxconnector.runtime.execution.journal import Journal, exec_journal
from tests.conftest import REPO, calendar_profile
from tests.execution.helpers import OPEN_MS, SETTINGS, make_core

_CHILD: Final = """
import asyncio, sys
from pathlib import Path
from fxconnector.config.calendars import load_calendar
from fxconnector.core.model.intent import OrderIntent, OrderType, Side
from fxconnector.core.model.tick import Tick
from fxconnector.execution.core import ExecCore, ExecSettings
from fxconnector.execution.risk.limits import RiskLimits, SymbolLimits, TraderLimits
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.execution.engine import ExecEngine
from fxconnector.runtime.execution.gateways.paper import PaperGateway
from fxconnector.runtime.execution.journal import exec_journal

root, round_ = Path(sys.argv[1]), int(sys.argv[2])
limits = RiskLimits({"alice": TraderLimits(
    {"EURUSD": SymbolLimits(1_000, 10**9, 1e15, 1e15)}, max_orders_per_minute=10**6)})
settings = ExecSettings(ack_timeout_ms=5_000, query_interval_ms=1_000, unknown_halt_ms=30_000,
                        not_found_grace_ms=10_000)

def intent(n, now):
    side = Side.BUY if n % 3 else Side.SELL
    return OrderIntent(f"i{n}", "alice", "EURUSD", side, 1 + n % 5, OrderType.MARKET, now)

async def main():
    clock = ManualClock(1767700800000 + round_ * 60_000)
    core = ExecCore(limits, load_calendar("fx_ny", now_ms=1767225600000), settings)
    engine = ExecEngine(core, exec_journal(root / "exec"), PaperGateway(root / "paper", clock),
                        clock)
    await engine.start(run_timers=False)
    engine.on_quote(Tick("EURUSD", 1.1, 1.1002, clock.now_ms()))
    n = max([int(o.intent_id[1:]) for o in core.orders()] + [-1]) + 1
    if n:  # the retry of the last one sent, whose answer may never have come
        first = core.order(f"i{n - 1}").intent
        retry = await engine.submit(first)
        assert retry.duplicate, retry
    while True:
        clock.advance(1)
        engine.on_quote(Tick("EURUSD", 1.1, 1.1002, clock.now_ms()))
        print("sending", n, flush=True)
        sub = await engine.submit(intent(n, clock.now_ms()))
        assert sub.decision.allowed, sub.decision
        print("answered", n, sub.order.state.value, flush=True)
        n += 1

asyncio.run(main())
"""

ROUNDS: Final = 8


def _run_until_killed(root: Path, round_: int, answers: int) -> list[int]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(root), str(round_)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    answered: list[int] = []
    try:
        assert child.stdout is not None
        while len(answered) < answers:
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else "child ended"
            words = line.split()
            if words[0] == "answered":
                answered.append(int(words[1]))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=30)
    return answered


def test_kill_9_of_the_exec_process_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(1515)
    answered: list[int] = []
    for round_ in range(ROUNDS):
        answered += _run_until_killed(tmp_path, round_, rng.randint(1, 40))

    async def recover() -> ExecEngine:
        clock = ManualClock(OPEN_MS + ROUNDS * 60_000)
        engine = ExecEngine(
            make_core(calendar_profile("fx_ny")),
            exec_journal(tmp_path / "exec"),
            PaperGateway(tmp_path / "paper", clock),
            clock,
        )
        await engine.start(run_timers=False)
        for _ in range(5):
            clock.advance(SETTINGS.not_found_grace_ms)
            await engine.tick()
        await engine.close()
        return engine

    engine = asyncio.run(recover())
    core = engine.core
    paper: Journal[PaperRecord] = Journal(tmp_path / "paper", PaperRecord, name=PAPER_JOURNAL)
    with paper:
        records = paper.open()
    placed = [r.intent.intent_id for r in records if isinstance(r, Placed)]
    assert len(placed) == len(set(placed)), "a second order for one intent"
    orders = {o.intent_id: o for o in core.orders()}
    # Every intent answered is there; nothing is left in doubt.
    assert {f"i{n}" for n in answered} <= set(orders)
    assert core.open_orders() == []
    books = PaperBroker()
    books.replay(records)
    for intent_id, order in orders.items():
        if order.state is OrderState.FILLED:
            report = books.query(intent_id, OPEN_MS)
            assert report.state is ReportState.FILLED
            assert [f.fill_id for f in report.fills] == sorted(order.fill_ids)
        else:
            # Journaled, never sent (killed before the send): rejected, never resent.
            assert order.state is OrderState.REJECTED, order
            assert intent_id not in placed
    # The core's position is the broker's.
    broker_units = sum(
        (1 if r.intent.side.value == "buy" else -1) * r.intent.units
        for r in records
        if isinstance(r, Placed)
    )
    assert core.position("alice", "EURUSD").units == broker_units
    assert len(answered) >= ROUNDS
