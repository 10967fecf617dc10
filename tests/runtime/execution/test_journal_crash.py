"""kill -9 of a real execution writer at random points: no acknowledged batch is lost, no intent
is sent twice.

The child is the core with its journal (the exec process's write path): on start it replays the
journal (crash-only), resubmits the last intent it had acknowledged (a client retrying after the
crash: it must be a duplicate, nothing journaled), then submits intents and fills them in a loop,
printing the `seq` of every batch once `append` (write + fsync) returned. The test kills it with
SIGKILL after a random number of acknowledgements (wherever it is: mid-write, mid-fsync, between
batches), reopens the journal and checks every acknowledged batch is there, whole.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Final

from fxconnector.core.model.exec_event import FillEvent, OrderEvent, OrderState, RiskEvent
from fxconnector.runtime.execution.journal import exec_journal
from tests.conftest import REPO, calendar_profile
from tests.execution.helpers import make_core

_CHILD: Final = """
import sys
from pathlib import Path
from fxconnector.config.calendars import load_calendar
from fxconnector.core.model.intent import OrderIntent, OrderType, Side
from fxconnector.core.model.tick import Tick
from fxconnector.execution.core import ExecCore
from fxconnector.execution.messages import OrderFilled, SubmitOrder
from fxconnector.execution.risk.limits import RiskLimits, SymbolLimits, TraderLimits
from fxconnector.runtime.execution.journal import exec_journal

OPEN_MS = 1767700800000
limits = RiskLimits({"alice": TraderLimits(
    {"EURUSD": SymbolLimits(1_000, 1_000_000, 1e12, 1e12)}, max_orders_per_minute=10**6)})
core = ExecCore(limits, load_calendar("fx_ny", now_ms=1767225600000))
journal = exec_journal(Path(sys.argv[1]))
core.replay(journal.open())
orders = core.orders()
now = OPEN_MS + len(orders)
core.on_price(Tick("EURUSD", 1.1, 1.1002, now))
if orders:
    again = core.submit(orders[-1].intent, now)
    assert again.duplicate and not again.output.events and not again.output.commands
    print("dup", orders[-1].intent.intent_id, flush=True)
n = len(orders)
while True:
    now += 1
    core.on_price(Tick("EURUSD", 1.1, 1.1002, now))
    side = Side.BUY if n % 2 == 0 else Side.SELL
    units = 1 + n % 7
    order = OrderIntent(f"i{n}", "alice", "EURUSD", side, units, OrderType.MARKET, now)
    sub = core.submit(order, now)
    assert sub.decision.allowed, sub.decision
    journal.append(sub.output.events)
    print("ack", sub.output.events[-1].seq, flush=True)
    sent = [c for c in sub.output.commands if isinstance(c, SubmitOrder)]
    print("sent", sent[0].intent.intent_id, flush=True)
    fill = core.on_gateway_event(OrderFilled(f"i{n}", now, f"F{n}", units, 1.1001), now)
    journal.append(fill.events)
    print("ack", fill.events[-1].seq, flush=True)
    n += 1
"""

ROUNDS: Final = 12


def _run_until_killed(root: Path, acknowledgements: int) -> tuple[int, list[str], list[str]]:
    """Start the child, read `acknowledgements` acks, SIGKILL it: (last acked seq, intents it
    sent, duplicates it saw)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    acked, sent, dups = 0, [], []
    try:
        assert child.stdout is not None
        seen = 0
        while seen < acknowledgements:
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else "child ended"
            what, value = line.split()
            if what == "ack":
                acked = int(value)
                seen += 1
            elif what == "sent":
                sent.append(value)
            else:
                dups.append(value)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=30)
    return acked, sent, dups


def test_kill_9_at_random_points_loses_no_acknowledged_batch(tmp_path: Path) -> None:
    rng = random.Random(15)
    fx_ny = calendar_profile("fx_ny")
    all_sent: list[str] = []
    for round_ in range(ROUNDS):
        acked, sent, dups = _run_until_killed(tmp_path, rng.randint(1, 60))
        all_sent += sent
        with exec_journal(tmp_path) as journal:
            events = journal.open()
        assert events, "nothing survived"
        assert events[-1].seq >= acked, (round_, events[-1].seq, acked)
        core = make_core(fx_ny)
        core.replay(events)  # raises on any gap: every batch is whole
        if round_:
            assert len(dups) == 1  # the retry after the crash was a duplicate
        # Every intent sent was journaled before it was sent, and it is one order.
        orders = {o.intent_id: o for o in core.orders()}
        assert set(all_sent) <= set(orders)
    assert len(all_sent) == len(set(all_sent)), "an intent was sent twice"
    risk = [e for e in events if isinstance(e, RiskEvent)]
    assert len(risk) == len({e.intent.intent_id for e in risk})
    fills = [e for e in events if isinstance(e, FillEvent)]
    assert len(fills) == len({e.fill_id for e in fills})
    states = [e.state for e in events if isinstance(e, OrderEvent)]
    assert OrderState.FILLED in states
