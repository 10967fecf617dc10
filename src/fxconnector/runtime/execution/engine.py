"""The execution engine: the pure core, its journal and a gateway, in the one order that makes
an intent exactly-once.

    engine = ExecEngine(core, exec_journal(root), gateway, clock, on_events=publish)
    await engine.start()                 # replay the journal, query open orders, pump evidence
    sub = await engine.submit(intent)    # decide -> journal (fsync) -> send -> evidence
    await engine.cancel(intent_id)
    await engine.set_trading_state(scope, state, reason)
    engine.on_quote(tick)                # latest prices (also to a gateway that matches on them)
    await engine.close()

Rules:
- Every output of the core is appended to the journal (fsync) right after the core produced it,
  with no `await` in between, so journal order is `seq` order; `on_events` is then called with
  the same events (publish them from there; it must not raise and must not block). Only after
  that are the output's commands sent to the gateway.
- A journal failure (StoreError) propagates: the process must stop and restart (crash-only); the
  restart replays what was made durable and asks the broker about the rest.
- A gateway call that raises TransientIOError or takes longer than `call_timeout_s` becomes
  `TransportFailed` evidence: the order goes UNKNOWN and is queried, never resent.
- What a gateway reports (its stream, a submit's or a query's report) goes back into the core;
  a fill reported twice is applied once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Final, Protocol, runtime_checkable

from fxconnector.core.errors import TransientIOError
from fxconnector.core.model.exec_event import ExecEvent, TradingState
from fxconnector.core.model.intent import OrderIntent
from fxconnector.core.model.tick import Tick
from fxconnector.execution.core import ExecCore, Output, Submission
from fxconnector.execution.messages import (
    CancelOrder,
    GatewayCommand,
    GatewayEvent,
    Operation,
    QueryOrder,
    SubmitOrder,
    TransportFailed,
)
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.execution.gateways.port import OrderGateway
from fxconnector.runtime.execution.journal import Journal

log = logging.getLogger(__name__)

#: How often the core's timers run (ack timeouts, re-queries, UNKNOWN escalation).
TICK_INTERVAL_MS: Final = 500


@runtime_checkable
class QuoteFed(Protocol):
    """A gateway that matches on live quotes (the paper gateway)."""

    def on_quote(self, tick: Tick) -> None: ...


def _no_listener(events: Sequence[ExecEvent]) -> None:
    return None


class ExecEngine:
    """Runs an `ExecCore` against a journal and a gateway."""

    def __init__(
        self,
        core: ExecCore,
        journal: Journal[ExecEvent],
        gateway: OrderGateway,
        clock: Clock,
        *,
        on_events: Callable[[Sequence[ExecEvent]], None] = _no_listener,
        call_timeout_s: float = 10.0,
    ) -> None:
        self.core = core
        self.journal = journal
        self.gateway = gateway
        self.clock = clock
        self.on_events = on_events
        self.call_timeout_s = call_timeout_s
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, run_timers: bool = True) -> None:
        """Replay the journal into the core, query every open order, start pumping the gateway's
        evidence (and the timers)."""
        await self.gateway.start()
        try:
            events = self.journal.open()
        except BaseException:
            await self.gateway.close()
            raise
        self.core.replay(events)
        for torn in self.journal.torn:
            log.warning("execution journal: torn last line cut (a crash mid-write): %s", torn)
        self._tasks.append(asyncio.create_task(self._pump(), name="exec-evidence"))
        if run_timers:
            self._tasks.append(asyncio.create_task(self._timers(), name="exec-timers"))
        await self._run(self._decide(self.core.recover(self.clock.now_ms())))

    async def close(self) -> None:
        """Stop the tasks, close the gateway and the journal."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.gateway.close()
        self.journal.close()

    # --- requests ----------------------------------------------------------------------------

    async def submit(self, intent: OrderIntent) -> Submission:
        """Decide on `intent`, journal the decision, send the order if allowed; the answer has
        the order as it stands after the gateway's first report."""
        submission = self.core.submit(intent, self.clock.now_ms())
        self._journal(submission.output)
        await self._run(submission.output)
        return replace(submission, order=self.core.order(intent.intent_id))

    async def cancel(self, intent_id: str) -> Output:
        """Ask the broker to cancel; CommandError when there is no such order."""
        out = self._decide(self.core.cancel(intent_id, self.clock.now_ms()))
        await self._run(out)
        return out

    async def set_trading_state(self, scope: str, state: TradingState, reason: str) -> Output:
        """Switch `scope` (a trader or `*`) to `state` by command."""
        out = self._decide(self.core.set_trading_state(scope, state, reason, self.clock.now_ms()))
        await self._run(out)
        return out

    def on_quote(self, tick: Tick) -> None:
        """A live quote: to the core (risk checks) and to a gateway that matches on quotes."""
        self.core.on_price(tick)
        if isinstance(self.gateway, QuoteFed):
            self.gateway.on_quote(tick)

    async def tick(self) -> Output:
        """Run the core's timers once (the timer task does this every TICK_INTERVAL_MS)."""
        out = self._decide(self.core.tick(self.clock.now_ms()))
        await self._run(out)
        return out

    async def evidence(self, event: GatewayEvent) -> Output:
        """Feed one piece of gateway evidence to the core and act on the result."""
        out = self._decide(self.core.on_gateway_event(event, self.clock.now_ms()))
        for note in out.notes:
            log.warning("execution: %s", note)
        await self._run(out)
        return out

    # --- the order of things -----------------------------------------------------------------

    def _decide(self, out: Output) -> Output:
        self._journal(out)
        return out

    def _journal(self, out: Output) -> None:
        if out.events:
            self.journal.append(out.events)
            self.on_events(out.events)

    async def _run(self, out: Output) -> None:
        for command in out.commands:
            await self._send(command)

    async def _send(self, command: GatewayCommand) -> None:
        if isinstance(command, SubmitOrder):
            intent_id, operation = command.intent.intent_id, Operation.SUBMIT
        elif isinstance(command, CancelOrder):
            intent_id, operation = command.intent_id, Operation.CANCEL
        else:
            intent_id, operation = command.intent_id, Operation.QUERY
        try:
            async with asyncio.timeout(self.call_timeout_s):
                if isinstance(command, SubmitOrder):
                    report = await self.gateway.submit(command)
                elif isinstance(command, QueryOrder):
                    report = await self.gateway.query(command.intent_id)
                else:
                    await self.gateway.cancel(command.intent_id)
                    return
        except (TransientIOError, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            log.warning("execution: %s of %s failed in transport: %s", operation, intent_id, detail)
            failure = TransportFailed(intent_id, self.clock.now_ms(), operation, detail[:512])
            await self.evidence(failure)
            return
        await self.evidence(report)

    async def _pump(self) -> None:
        async for event in self.gateway.events():
            await self.evidence(event)

    async def _timers(self) -> None:
        while True:
            await self.clock.sleep_until(self.clock.now_ms() + TICK_INTERVAL_MS)
            await self.tick()
