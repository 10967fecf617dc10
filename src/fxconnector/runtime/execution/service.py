"""The exec process's service: control requests -> `ExecEngine`; prices in; events out.

Rules:
- The engine (`engine.py`) owns the exactly-once order of things (decide -> journal fsync ->
  send); this module only translates: a control request into an engine call and its result
  into an answer (`core.model.exec_control`), the surface's ticks into `engine.on_quote`, and
  the journaled events into the publisher and the answers' view of orders.
- Every event the journal holds reaches `record` once, in `seq` order: the replayed ones when
  the journal is opened (`ObservedJournal`, before the start's reconcile), the new ones through
  the engine's `on_events` right after their fsync.
- A submit's answer is the order as it stands once the gateway's first report is journaled
  (paper: FILLED for a market order), or as journaled when the gateway has not answered.
- Prices: each period the surface's new ticks go to the engine (risk: stale-price check; the
  paper gateway fills from them). Redis trouble keeps the last prices (their age then denies).
  Publishing is best effort and never blocks a request: events wait in the publisher.

This module must not know sockets or frames (control.py) or how a gateway talks to its broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

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
    RiskEvent,
    TradingState,
    TradingStateEvent,
)
from fxconnector.core.model.exec_process import ExecProcessStatus, Gateway
from fxconnector.core.model.tick import Tick
from fxconnector.core.validation.intent import validate_intent
from fxconnector.execution.core import ExecCore
from fxconnector.execution.risk.validator import Deny
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.execution.engine import ExecEngine
from fxconnector.runtime.execution.gateways.port import OrderGateway
from fxconnector.runtime.execution.journal import Journal
from fxconnector.runtime.execution.prices import PriceReader
from fxconnector.runtime.execution.publisher import ExecPublisher

#: The engine's background tasks (`ExecEngine.start`), watched by name each period.
ENGINE_TASKS: Final = frozenset({"exec-evidence", "exec-timers"})
_STATES = {
    "halt": TradingState.HALTED,
    "reduce": TradingState.REDUCING,
    "resume": TradingState.ACTIVE,
}


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """Who the exec process is, for its live status (`exec_process_v1`): written every period
    with a time to live of `ttl_ms`."""

    pid: int
    started_ms: int
    gateway: Gateway
    ttl_ms: int


class ObservedJournal(Journal[ExecEvent]):
    """The exec journal, handing what `open()` replays to `on_replay` first."""

    __slots__ = ("on_replay",)

    def __init__(self, root: Path, on_replay: Callable[[Sequence[ExecEvent]], None]) -> None:
        super().__init__(root, ExecEvent)
        self.on_replay = on_replay

    def open(self) -> list[ExecEvent]:
        records = super().open()
        self.on_replay(records)
        return records


class ExecService:
    """Serves control requests over an `ExecEngine` and feeds it the surface's prices."""

    def __init__(
        self,
        core: ExecCore,
        journal_dir: Path,
        gateway: OrderGateway,
        clock: Clock,
        publisher: ExecPublisher,
        prices: PriceReader,
        symbols: Sequence[str],
        identity: ProcessIdentity | None = None,
        call_timeout_s: float = 10.0,
    ) -> None:
        self.publisher = publisher
        self._identity = identity
        self._clock = clock
        self.journal = ObservedJournal(journal_dir, self.record)
        self.engine = ExecEngine(
            core, self.journal, gateway, clock, call_timeout_s=call_timeout_s, on_events=self.record
        )
        self._prices = prices
        self._symbols = tuple(symbols)
        self._orders: dict[str, OrderEvent] = {}
        self._risk: dict[str, RiskEvent] = {}
        #: The latest quote of each symbol given to the engine.
        self.quotes: dict[str, Tick] = {}
        self.replayed = 0
        self.price_errors = 0

    # --- start and stop ----------------------------------------------------------------------

    async def start(self) -> int:
        """Open the journal (its lock), replay it, reconcile the open orders with the gateway;
        the number of orders that were open (queried)."""
        await self.engine.start()
        self.replayed = self.engine.core.seq
        return sum(1 for o in self._orders.values() if not o.state.terminal)

    async def close(self) -> None:
        await self.engine.close()

    # --- events ------------------------------------------------------------------------------

    def record(self, events: Sequence[ExecEvent]) -> None:
        """Journaled events (replayed or new), in `seq` order: the answers' view, the surface."""
        self._fold(events)
        self.publisher.add(events)

    def _fold(self, events: Iterable[ExecEvent]) -> None:
        for event in events:
            if isinstance(event, OrderEvent):
                self._orders[event.intent_id] = event
            elif isinstance(event, RiskEvent):
                self._risk.setdefault(event.intent.intent_id, event)

    # --- requests ----------------------------------------------------------------------------

    async def handle(self, request: Request) -> dict[str, Any]:
        if isinstance(request, SubmitRequest):
            return await self._submit(request.intent)
        if isinstance(request, StatusRequest):
            return self._status(request.intent_id)
        if isinstance(request, CancelRequest):
            try:
                await self.engine.cancel(request.intent_id)
            except CommandError as exc:
                return error_answer(ControlErrorCode.UNKNOWN_INTENT, str(exc))
            return self._status(request.intent_id)
        assert isinstance(request, RiskRequest)
        out = await self.engine.set_trading_state(
            ALL_TRADERS, _STATES[request.action], request.reason
        )
        state = next(e for e in out.events if isinstance(e, TradingStateEvent))
        return ok_answer({"trading_state": msgspec.to_builtins(state)})

    async def _submit(self, payload: dict[str, Any]) -> dict[str, Any]:
        checked = validate_intent(payload)
        if checked.value is None or not checked.ok:
            problem = checked.problems[0]
            return error_answer(
                ControlErrorCode.BAD_INTENT,
                f"{problem.code.value}: {problem.message} at {problem.path}",
            )
        intent = checked.value
        submission = await self.engine.submit(intent)
        denied = submission.decision if isinstance(submission.decision, Deny) else None
        result = SubmitResult(
            intent_id=intent.intent_id,
            decision=Decision.DENY if denied else Decision.ALLOW,
            reason=denied.reason if denied else None,
            detail=denied.detail if denied else "",
            duplicate=submission.duplicate,
            order=self._orders.get(intent.intent_id) if submission.order is not None else None,
        )
        return ok_answer(msgspec.to_builtins(result))

    def _status(self, intent_id: str) -> dict[str, Any]:
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
            order=self._orders.get(intent_id),
        )
        return ok_answer(msgspec.to_builtins(result))

    # --- the period --------------------------------------------------------------------------

    async def step(self) -> None:
        """One period: the engine's tasks alive, the surface's new ticks to the engine, then
        publish. A failed engine task (a journal that cannot be written) is raised here:
        crash-only, the process stops and a restart replays what was made durable."""
        _raise_failed_engine_task()
        try:
            ticks = await self._prices.latest(self._symbols)
        except TransientIOError:
            self.price_errors += 1
            ticks = {}
        for tick in ticks.values():
            last = self.quotes.get(tick.symbol)
            if last is not None and last.ts_ms >= tick.ts_ms:
                continue  # nothing new for this symbol
            self.quotes[tick.symbol] = tick
            self.engine.on_quote(tick)
        # The publisher resyncs on its next call; the journal holds everything.
        with contextlib.suppress(TransientIOError):
            await self.publisher.publish()
        if self._identity is not None:
            with contextlib.suppress(TransientIOError):
                status = self.process_status(self._identity, self._clock.now_ms())
                await self.publisher.publish_process(status, self._identity.ttl_ms)

    def process_status(self, identity: ProcessIdentity, now_ms: int) -> ExecProcessStatus:
        """The live status of this process at `now_ms`, from the core's state."""
        core = self.engine.core
        own = [state for scope, (state, _, _) in core.trading_states().items() if scope != "*"]
        return ExecProcessStatus(
            ts=now_ms,
            pid=identity.pid,
            started_ms=identity.started_ms,
            gateway=identity.gateway,
            trading_state=core.trading_state(ALL_TRADERS),
            traders_reducing=own.count(TradingState.REDUCING),
            traders_halted=own.count(TradingState.HALTED),
            open_orders=len(core.open_orders()),
            open_positions=sum(1 for p in core.positions().values() if p.units),
            journal_seq=core.seq,
        )


def _raise_failed_engine_task() -> None:
    for task in asyncio.all_tasks():
        if task.get_name() in ENGINE_TASKS and task.done() and not task.cancelled():
            failure = task.exception()
            if failure is not None:
                raise failure
            raise RuntimeError(f"the engine's task {task.get_name()} ended on its own")
