"""The exec process's engine: ExecCore + journal + gateway + surface, one request at a time.

Rules:
- Every core call's events are appended to the journal durably (fsync) BEFORE its commands go
  to the gateway and before any answer leaves the process (ExecCore's protocol). A journal
  append that fails stops the process (crash-only: only a replay gives the durable state).
- One lock serialises everything that moves the core (requests, gateway evidence, ticks), so
  the journal's order is the order the core saw.
- Start = recovery: replay the journal into the core, then `recover()` (query every order not
  done) and apply the gateway's answers, before `ready`. Nothing is ever resent on recovery.
- Prices: each period the surface's new ticks go to the core (risk: stale-price check) and to
  `on_quote` (the paper gateway fills from them). Redis trouble keeps the last prices (their
  age then denies).
- The gateway's evidence (acks, fills) arrives on its own stream (`follow_gateway`); a submit
  waits up to `ack_wait_s` for the first of it, so its answer says ACCEPTED/FILLED/REJECTED
  when the broker is quick, and the order as journaled (SUBMITTED) otherwise.
- Publishing is best effort and never blocks a request: the events wait in the publisher until
  Redis takes them (keys.py, execution keys).

This module must not know sockets or frames (control.py) or how a gateway talks to its broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec

from fxconnector.core.errors import CommandError, TransientIOError
from fxconnector.core.model.exec_control import (
    CancelRequest,
    ControlErrorCode,
    Request,
    RiskRequest,
    StatusRequest,
    SubmitRequest,
    SubmitResult,
    error_answer,
    ok_answer,
)
from fxconnector.core.model.exec_event import (
    ALL_TRADERS,
    Decision,
    ExecEvent,
    OrderEvent,
    OrderState,
    RiskEvent,
    TradingState,
    TradingStateEvent,
)
from fxconnector.core.model.tick import Tick
from fxconnector.core.validation.intent import validate_intent
from fxconnector.execution.core import ExecCore, Output
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
from fxconnector.runtime.execution.prices import PriceReader
from fxconnector.runtime.execution.publisher import ExecPublisher

log = logging.getLogger("fxconnector.exec")

#: Order states that say nothing from the broker yet.
_UNANSWERED = frozenset({OrderState.NEW, OrderState.SUBMITTED})
_STATES = {
    "halt": TradingState.HALTED,
    "reduce": TradingState.REDUCING,
    "resume": TradingState.ACTIVE,
}


class Journal(Protocol):
    """The execution journal: append-only, durable on return."""

    def append(self, events: Sequence[ExecEvent]) -> None: ...


class ExecEngine:
    """Serves control requests and drives the core with prices and time."""

    def __init__(
        self,
        core: ExecCore,
        journal: Journal,
        gateway: OrderGateway,
        publisher: ExecPublisher,
        prices: PriceReader,
        clock: Clock,
        symbols: Sequence[str],
        *,
        on_quote: Callable[[Tick], None] | None = None,
        ack_wait_s: float = 2.0,
    ) -> None:
        self.core = core
        self._journal = journal
        self._gateway = gateway
        self.publisher = publisher
        self._prices = prices
        self._clock = clock
        self._symbols = tuple(symbols)
        self._lock = asyncio.Lock()
        self._ack_wait_s = ack_wait_s
        self._on_quote = on_quote
        #: Submits waiting for the broker's first evidence on their order (intent_id -> event).
        self._acks: dict[str, asyncio.Event] = {}
        self._orders: dict[str, OrderEvent] = {}
        self._risk: dict[str, RiskEvent] = {}
        self.price_errors = 0
        #: The latest quote of each symbol (the paper gateway fills from these).
        self.quotes: dict[str, Tick] = {}

    # --- start ------------------------------------------------------------------------------

    async def recover(self, replayed: Sequence[ExecEvent]) -> int:
        """Replay the journal's events, then reconcile every open order with the gateway.

        Returns the number of orders that were open (queried)."""
        self.core.replay(replayed)
        self._fold(replayed)
        self.publisher.add(replayed)
        async with self._lock:
            out = self.core.recover(self._clock.now_ms())
            await self._carry_out(out)
        return len(out.commands)

    # --- requests ---------------------------------------------------------------------------

    async def handle(self, request: Request) -> dict[str, Any]:
        if isinstance(request, SubmitRequest):
            return await self._submit(request.intent)
        if isinstance(request, StatusRequest):
            return self._status(request.intent_id)
        if isinstance(request, CancelRequest):
            return await self._cancel(request.intent_id)
        assert isinstance(request, RiskRequest)
        return await self._risk_switch(request)

    async def _submit(self, payload: dict[str, Any]) -> dict[str, Any]:
        checked = validate_intent(payload)
        if checked.value is None or not checked.ok:
            problem = checked.problems[0]
            return error_answer(
                ControlErrorCode.BAD_INTENT,
                f"{problem.code.value}: {problem.message} at {problem.path}",
            )
        intent = checked.value
        acked = asyncio.Event()
        async with self._lock:
            submission = self.core.submit(intent, self._clock.now_ms())
            if submission.output.commands:
                self._acks[intent.intent_id] = acked
            await self._carry_out(submission.output)
        if intent.intent_id in self._acks:
            # The answer carries the broker's first word on the order (accepted, filled,
            # rejected) when it comes within the wait; else the order as journaled.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(acked.wait(), self._ack_wait_s)
            self._acks.pop(intent.intent_id, None)
        decision = Decision.ALLOW if submission.decision.allowed else Decision.DENY
        reason = getattr(submission.decision, "reason", None)
        detail = getattr(submission.decision, "detail", "")
        result = SubmitResult(
            intent_id=intent.intent_id,
            decision=decision,
            reason=reason,
            detail=detail,
            duplicate=submission.duplicate,
            order=self._orders.get(intent.intent_id) if submission.order is not None else None,
        )
        return ok_answer(msgspec.to_builtins(result))

    def _status(self, intent_id: str) -> dict[str, Any]:
        order = self._orders.get(intent_id)
        risk = self._risk.get(intent_id)
        if risk is None:
            return error_answer(
                ControlErrorCode.UNKNOWN_INTENT, f"the journal holds no intent {intent_id!r}"
            )
        result = SubmitResult(
            intent_id=intent_id,
            decision=risk.decision,
            reason=risk.reason,
            detail=risk.detail,
            duplicate=True,
            order=order,
        )
        return ok_answer(msgspec.to_builtins(result))

    async def _cancel(self, intent_id: str) -> dict[str, Any]:
        async with self._lock:
            try:
                out = self.core.cancel(intent_id, self._clock.now_ms())
            except CommandError as exc:
                return error_answer(ControlErrorCode.UNKNOWN_INTENT, str(exc))
            await self._carry_out(out)
        return self._status(intent_id)

    async def _risk_switch(self, request: RiskRequest) -> dict[str, Any]:
        async with self._lock:
            out = self.core.set_trading_state(
                ALL_TRADERS, _STATES[request.action], request.reason, self._clock.now_ms()
            )
            await self._carry_out(out)
        state = next(e for e in out.events if isinstance(e, TradingStateEvent))
        return ok_answer({"trading_state": msgspec.to_builtins(state)})

    # --- the loop ---------------------------------------------------------------------------

    async def step(self) -> None:
        """One period: prices in, gateway evidence, time-outs, publish."""
        try:
            ticks = await self._prices.latest(self._symbols)
        except TransientIOError:
            self.price_errors += 1
            ticks = {}
        for tick in ticks.values():
            last = self.quotes.get(tick.symbol)
            if last is not None and last.ts_ms >= tick.ts_ms:
                continue  # nothing new for this symbol
            self.core.on_price(tick)
            self.quotes[tick.symbol] = tick
            if self._on_quote is not None:
                self._on_quote(tick)  # the paper gateway fills from it (evidence: its stream)
        async with self._lock:
            await self._carry_out(self.core.tick(self._clock.now_ms()))
        # The publisher resyncs on its next call; the journal holds everything.
        with contextlib.suppress(TransientIOError):
            await self.publisher.publish()

    async def follow_gateway(self) -> None:
        """Apply the gateway's evidence as it comes (acks, fills, cancels), until it ends."""
        async for evidence in self._gateway.events():
            async with self._lock:
                await self._carry_out(self.core.on_gateway_event(evidence, self._clock.now_ms()))

    # --- the protocol of ExecCore ----------------------------------------------------------

    async def _carry_out(self, out: Output) -> None:
        """Journal `out.events` durably, then send `out.commands`, then apply what the gateway
        answers (which may bring more events and commands), until nothing is left."""
        pending = [out]
        while pending:
            current = pending.pop(0)
            self._record(current.events)
            for note in current.notes:
                log.info("exec.note", extra={"fields": {"note": note}})
            for command in current.commands:
                evidence = await self._send(command)
                if evidence is not None:
                    pending.append(self.core.on_gateway_event(evidence, self._clock.now_ms()))

    async def _send(self, command: GatewayCommand) -> GatewayEvent | None:
        """Hand one command to the gateway; a query's report, or a transport failure (the
        order becomes UNKNOWN: never resent), is evidence to apply at once."""
        try:
            if isinstance(command, SubmitOrder):
                await self._gateway.submit(command)
            elif isinstance(command, CancelOrder):
                await self._gateway.cancel(command.intent_id)
            else:
                assert isinstance(command, QueryOrder)
                return await self._gateway.query(command.intent_id)
        except TransientIOError as exc:
            operation = {
                SubmitOrder: Operation.SUBMIT,
                CancelOrder: Operation.CANCEL,
                QueryOrder: Operation.QUERY,
            }[type(command)]
            intent_id = (
                command.intent.intent_id if isinstance(command, SubmitOrder) else command.intent_id
            )
            return TransportFailed(
                intent_id=intent_id,
                ts=self._clock.now_ms(),
                operation=operation,
                detail=str(exc)[:500],
            )
        return None

    def _record(self, events: Sequence[ExecEvent]) -> None:
        if not events:
            return
        self._journal.append(events)  # durable before anything is sent or answered
        self._fold(events)
        self.publisher.add(events)

    def _fold(self, events: Iterable[ExecEvent]) -> None:
        for event in events:
            if isinstance(event, OrderEvent):
                self._orders[event.intent_id] = event
                if event.state not in _UNANSWERED:
                    waiting = self._acks.get(event.intent_id)
                    if waiting is not None:
                        waiting.set()
            elif isinstance(event, RiskEvent):
                self._risk.setdefault(event.intent.intent_id, event)
