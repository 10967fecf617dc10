"""The execution core: intents, risk, orders, fills and positions, without I/O.

    core = ExecCore(limits, calendars, ExecSettings())
    core.replay(journal.open())                                # crash-only: start == recovery
    out = core.recover(now_ms)                                 # query every open order
    core.on_price(tick)                                        # latest quotes
    sub = core.submit(intent, now_ms)                          # Submission(decision, order, out)
    out = core.cancel(intent_id, now_ms)
    out = core.on_gateway_event(evidence, now_ms)              # acks, fills, rejects, reports
    out = core.tick(now_ms)                                    # timeouts -> UNKNOWN, re-queries
    out = core.set_trading_state(scope, state, reason, now_ms)

Every call returns an `Output`: `events` (exec_event_v1, numbered by `seq`) and `commands` for
the gateway. THE CALLER MUST APPEND `events` TO THE JOURNAL DURABLY (fsync) BEFORE IT EXECUTES
`commands`; that is what makes an intent exactly-once across a crash. If the append fails, the
process must stop (crash-only): the core has already moved on, and only a replay of the journal
gives the state that was made durable.

Rules:
- The state changes only by applying events (`book.Book.apply`), live and on replay alike, so a
  replay of the journal rebuilds exactly the state the live core had; an event out of `seq`
  order is a ContractViolation.
- `intent_id` is the idempotency key: a second submit of the same id returns the first answer
  (the existing order, or the same deny) and sends nothing; the same id with a different intent is
  denied `intent_id_conflict`.
- A timeout or transport error makes an order UNKNOWN; UNKNOWN is re-queried and resolved only by
  evidence; an order UNKNOWN for longer than `unknown_halt_ms` halts all trading (`*`).
- A daily realised loss past a symbol's limit halts the trader automatically.
- No clock reads: `now_ms` comes in with every call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Final

from fxconnector.core.errors import CommandError, ContractViolation
from fxconnector.core.model.exec_event import (
    ALL_TRADERS,
    Decision,
    ExecEvent,
    FillEvent,
    OrderEvent,
    OrderState,
    PositionEvent,
    RiskEvent,
    RiskReason,
    StateSource,
    TradingState,
    TradingStateEvent,
)
from fxconnector.core.model.intent import OrderIntent
from fxconnector.core.model.tick import Tick
from fxconnector.execution import orders as sm
from fxconnector.execution.api import (
    ExecSettings,
    Output,
    Submission,
    replace_ts,
    schema_problem,
)
from fxconnector.execution.book import Book
from fxconnector.execution.messages import (
    REPORT_TO_STATE,
    CancelOrder,
    GatewayCommand,
    GatewayEvent,
    Operation,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReport,
    QueryOrder,
    ReportState,
    SubmitOrder,
    TransportFailed,
)
from fxconnector.execution.orders import Order
from fxconnector.execution.positions import Position, apply_fill, money
from fxconnector.execution.risk.limits import CalendarLookup, RiskLimits, trading_day
from fxconnector.execution.risk.validator import (
    ALLOW,
    Deny,
    Exposure,
    TraderView,
    check_intent,
)

__all__ = ["ExecCore", "ExecSettings", "Output", "Submission"]

_SCOPE: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}|\*")


class ExecCore:
    """The sans-I/O execution core (see the module docstring for the protocol)."""

    def __init__(
        self,
        limits: RiskLimits,
        calendars: CalendarLookup,
        settings: ExecSettings | None = None,
    ) -> None:
        self.limits = limits
        self.calendars = calendars
        self.settings = settings or ExecSettings()
        self._book = Book()
        self._quotes: dict[str, Tick] = {}
        self._last_query_ms: dict[str, int] = {}
        self._escalated: set[str] = set()

    # --- reading -----------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """The `seq` of the last event applied."""
        return self._book.seq

    def order(self, intent_id: str) -> Order | None:
        return self._book.orders.get(intent_id)

    def orders(self) -> list[Order]:
        return list(self._book.orders.values())

    def open_orders(self) -> list[Order]:
        return self._book.open_orders()

    def denial(self, intent_id: str) -> RiskEvent | None:
        return self._book.denied.get(intent_id)

    def position(self, trader: str, symbol: str) -> Position:
        return self._book.position(trader, symbol)

    def positions(self) -> dict[tuple[str, str], Position]:
        return dict(self._book.positions)

    def day_realised_pnl(self, trader: str, symbol: str, now_ms: int) -> float:
        """Realised P&L of the trading day that contains `now_ms`."""
        day = self._book.day_pnl.get((trader, symbol))
        if day is None:
            return 0.0
        today = trading_day(now_ms, self.calendars.for_symbol(symbol))
        return day.pnl if day.day_open_ms == today else 0.0

    def trading_state(self, trader: str = ALL_TRADERS) -> TradingState:
        """The effective state of `trader`: the stricter of everyone's and the trader's own."""
        return self._book.trading_state(trader)

    def trading_states(self) -> dict[str, tuple[TradingState, str, int]]:
        """Every scope that was ever switched: (state, reason, since_ms)."""
        return {k: (v.state, v.reason, v.since_ms) for k, v in self._book.scopes.items()}

    def exposure(self, trader: str, symbol: str) -> Exposure:
        """The position and the unfilled units of the working orders, per side."""
        return self._book.exposure(trader, symbol)

    def quote(self, symbol: str) -> Tick | None:
        return self._quotes.get(symbol)

    # --- prices ------------------------------------------------------------------------------

    def on_price(self, tick: Tick) -> None:
        """Remember the latest quote of a symbol (an older one than we have is ignored)."""
        current = self._quotes.get(tick.symbol)
        if current is None or tick.ts_ms >= current.ts_ms:
            self._quotes[tick.symbol] = tick

    # --- intents -----------------------------------------------------------------------------

    def submit(self, intent: OrderIntent, now_ms: int) -> Submission:
        """Decide on `intent`; when allowed, the order is SUBMITTED and a SubmitOrder command is
        returned (to send only after the events are journaled)."""
        problem = schema_problem(intent)
        if problem is not None:
            # Not journaled: an event carrying it could not be read back.
            return Submission(Deny(RiskReason.INVALID_INTENT, problem), None, False, Output())
        existing = self._book.orders.get(intent.intent_id)
        denied = self._book.denied.get(intent.intent_id)
        if existing is not None or denied is not None:
            return self._repeat(intent, existing, denied)
        view = TraderView(
            state=self.trading_state(intent.trader),
            exposure=self.exposure(intent.trader, intent.symbol),
            orders_last_minute=self._book.orders_last_minute(intent.trader, now_ms),
            day_realised_pnl=self.day_realised_pnl(intent.trader, intent.symbol, now_ms),
        )
        decision = check_intent(
            intent,
            view,
            limits=self.limits,
            calendar=self.calendars.for_symbol(intent.symbol),
            quote=self._quotes.get(intent.symbol),
            now_ms=now_ms,
        )
        if isinstance(decision, Deny):
            event = self._emit(
                RiskEvent,
                now_ms,
                intent=intent,
                decision=Decision.DENY,
                reason=decision.reason,
                detail=decision.detail[:512],
            )
            return Submission(decision, None, False, Output((event,)))
        risk = self._emit(RiskEvent, now_ms, intent=intent, decision=Decision.ALLOW)
        order = self._book.orders[intent.intent_id]
        sent = self._order_event(sm.submitted(order, now_ms), now_ms)
        out = Output((risk, sent), (SubmitOrder(intent),))
        return Submission(ALLOW, self._book.orders[intent.intent_id], False, out)

    def _repeat(
        self, intent: OrderIntent, order: Order | None, denied: RiskEvent | None
    ) -> Submission:
        first = order.intent if order is not None else denied.intent if denied else None
        # A retry may carry a new `ts` (when the client sent it); everything else must match.
        if first is None or replace_ts(first, intent.ts) != intent:
            detail = f"intent_id {intent.intent_id!r} was already used for a different intent"
            return Submission(Deny(RiskReason.INTENT_ID_CONFLICT, detail), order, True, Output())
        if order is not None:
            return Submission(ALLOW, order, True, Output())
        reason = denied.reason if denied is not None else None
        if denied is None or reason is None:
            raise ContractViolation(f"intent {intent.intent_id} is neither an order nor denied")
        return Submission(Deny(reason, denied.detail), None, True, Output())

    def cancel(self, intent_id: str, now_ms: int) -> Output:
        """Ask the broker to cancel a working order (allowed in every trading state). A done
        order needs nothing; an unknown id is a CommandError."""
        order = self._book.orders.get(intent_id)
        if order is None:
            raise CommandError(f"no order with intent_id {intent_id!r}")
        if not order.working:
            return Output(notes=(f"order {intent_id} is already {order.state.value}",))
        event = self._order_event(replace(order, cancel_requested=True), now_ms)
        self._last_query_ms[intent_id] = now_ms
        return Output((event,), (CancelOrder(intent_id),))

    def set_trading_state(
        self, scope: str, state: TradingState, reason: str, now_ms: int
    ) -> Output:
        """Switch a trader (or `*`, everyone) to ACTIVE, REDUCING or HALTED by command; a scope
        that is neither `*` nor a valid trader id is a CommandError."""
        if not _SCOPE.fullmatch(scope):
            raise CommandError(f"scope {scope!r} is neither * nor a trader id")
        event = self._emit(
            TradingStateEvent,
            now_ms,
            scope=scope,
            state=state,
            source=StateSource.COMMAND,
            reason=reason[:512],
        )
        if state is not TradingState.HALTED and scope == ALL_TRADERS:
            # An operator resumed knowing what is still unknown: escalate those only anew.
            self._escalated = {
                o.intent_id for o in self.open_orders() if o.state is OrderState.UNKNOWN
            }
        return Output((event,))

    # --- evidence ----------------------------------------------------------------------------

    def on_gateway_event(self, evidence: GatewayEvent, now_ms: int) -> Output:
        """Apply what a gateway reported (acks, fills, rejects, cancels, query reports,
        transport failures)."""
        problem = schema_problem(evidence)
        if problem is not None:
            return Output(notes=(f"unusable evidence from the gateway ({problem}): {evidence!r}",))
        order = self._book.orders.get(evidence.intent_id)
        if order is None:
            return Output(notes=(f"evidence for an order we do not have: {evidence!r}",))
        events: list[ExecEvent] = []
        commands: list[GatewayCommand] = []
        if isinstance(evidence, OrderFilled):
            events += self._fill(order, evidence, now_ms)
        elif isinstance(evidence, OrderAccepted):
            events += self._change(
                order, sm.accepted(order, now_ms, evidence.broker_order_id), now_ms
            )
        elif isinstance(evidence, OrderRejected):
            events += self._change(order, sm.rejected(order, now_ms, evidence.reason), now_ms)
        elif isinstance(evidence, OrderCancelled):
            moved = sm.ended(order, OrderState.CANCELLED, now_ms, evidence.reason)
            events += self._change(order, moved, now_ms)
        elif isinstance(evidence, OrderExpired):
            moved = sm.ended(order, OrderState.EXPIRED, now_ms, evidence.reason)
            events += self._change(order, moved, now_ms)
        elif isinstance(evidence, OrderReport):
            events += self._report(order, evidence, now_ms)
        elif isinstance(evidence, TransportFailed):
            events_, commands_ = self._transport_failed(order, evidence, now_ms)
            events += events_
            commands += commands_
        return Output(tuple(events), tuple(commands))

    def _change(self, before: Order, after: Order, now_ms: int) -> list[ExecEvent]:
        if after == before:
            return []
        return [self._order_event(after, now_ms)]

    def _fill(self, order: Order, fill: OrderFilled, now_ms: int) -> list[ExecEvent]:
        if fill.fill_id in order.fill_ids:
            return []
        intent = order.intent
        side = fill.side or intent.side
        exit_fill = side is not intent.side
        if exit_fill:
            # The order's own stop loss or take profit closed what it opened.
            moved, late = order, False
        else:
            moved, late = sm.filled(order, now_ms, fill.fill_id, fill.units, fill.price)
            if fill.broker_order_id and moved.broker_order_id is None:
                moved = replace(moved, broker_order_id=fill.broker_order_id)
        events: list[ExecEvent] = [
            self._emit(
                FillEvent,
                now_ms,
                intent_id=intent.intent_id,
                trader=intent.trader,
                symbol=intent.symbol,
                side=side,
                units=fill.units,
                price=fill.price,
                fill_id=fill.fill_id,
                late=late,
            )
        ]
        key = (intent.trader, intent.symbol)
        position, realised = apply_fill(
            self._book.positions.get(key, Position()), side, fill.units, fill.price
        )
        day_open = trading_day(now_ms, self.calendars.for_symbol(intent.symbol))
        day = self._book.day_pnl.get(key)
        day_pnl = money(
            (day.pnl if day is not None and day.day_open_ms == day_open else 0.0) + realised
        )
        events.append(
            self._emit(
                PositionEvent,
                now_ms,
                trader=intent.trader,
                symbol=intent.symbol,
                units=position.units,
                avg_price=position.avg_price,
                realised_pnl=position.realised_pnl,
                day_open_ms=day_open,
                day_realised_pnl=day_pnl,
            )
        )
        if not exit_fill:
            events.append(self._order_event(moved, now_ms))
        limits = self.limits.for_symbol(intent.trader, intent.symbol)
        if (
            limits is not None
            and -day_pnl >= limits.max_daily_loss
            and self._book.scope_state(intent.trader) is not TradingState.HALTED
        ):
            events.append(
                self._emit(
                    TradingStateEvent,
                    now_ms,
                    scope=intent.trader,
                    state=TradingState.HALTED,
                    source=StateSource.AUTO,
                    reason=f"daily realised loss {-day_pnl:.2f} in {intent.symbol} reached "
                    f"{limits.max_daily_loss:.2f}",
                )
            )
        return events

    def _report(self, order: Order, report: OrderReport, now_ms: int) -> list[ExecEvent]:
        events: list[ExecEvent] = []
        current = order
        for fill in report.fills:
            events += self._fill(current, fill, now_ms)
            current = self._book.orders[order.intent_id]
        if report.state is ReportState.NOT_FOUND:
            submitted = current.submitted_ms if current.submitted_ms is not None else 0
            if (
                current.state in sm.UNCONFIRMED_STATES
                and now_ms - submitted >= self.settings.not_found_grace_ms
            ):
                reason = "the broker has no order with this client id: it never arrived"
                events += self._change(current, sm.rejected(current, now_ms, reason), now_ms)
            return events
        state = REPORT_TO_STATE[report.state]
        if state is OrderState.ACCEPTED:
            moved = sm.accepted(current, now_ms, report.broker_order_id)
        elif state is OrderState.REJECTED:
            moved = sm.rejected(current, now_ms, report.reason)
        elif state in (OrderState.CANCELLED, OrderState.EXPIRED):
            moved = sm.ended(current, state, now_ms, report.reason)
        else:
            # FILLED: the fills above made it so; if some are missing, the next query brings them.
            moved = sm.accepted(current, now_ms, report.broker_order_id)
        events += self._change(current, moved, now_ms)
        return events

    def _transport_failed(
        self, order: Order, failure: TransportFailed, now_ms: int
    ) -> tuple[list[ExecEvent], list[GatewayCommand]]:
        self._last_query_ms[order.intent_id] = now_ms
        if failure.operation is Operation.SUBMIT:
            reason = f"submit failed in transport: {failure.detail}"[:512]
            return self._change(order, sm.unknown(order, now_ms, reason), now_ms), [
                QueryOrder(order.intent_id)
            ]
        # A cancel or query that failed is asked again by tick(); the order's state is unchanged.
        return [], []

    # --- time --------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> Output:
        """Timeouts: SUBMITTED without evidence past `ack_timeout_ms` becomes UNKNOWN; UNKNOWN
        orders and unanswered cancels are queried every `query_interval_ms`; an order UNKNOWN
        past `unknown_halt_ms` halts everyone."""
        events: list[ExecEvent] = []
        commands: list[GatewayCommand] = []
        settings = self.settings
        for order in self.open_orders():
            current = order
            if (
                current.state is OrderState.SUBMITTED
                and now_ms - current.since_ms >= settings.ack_timeout_ms
            ):
                reason = f"no answer from the broker for {now_ms - current.since_ms} ms"
                events += self._change(current, sm.unknown(current, now_ms, reason), now_ms)
                current = self._book.orders[current.intent_id]
                commands.append(QueryOrder(current.intent_id))
                self._last_query_ms[current.intent_id] = now_ms
                continue
            needs_query = current.state is OrderState.UNKNOWN or (
                current.cancel_requested and now_ms - current.since_ms >= settings.ack_timeout_ms
            )
            last = self._last_query_ms.get(current.intent_id)
            if needs_query and (last is None or now_ms - last >= settings.query_interval_ms):
                commands.append(QueryOrder(current.intent_id))
                self._last_query_ms[current.intent_id] = now_ms
            if (
                current.state is OrderState.UNKNOWN
                and now_ms - current.since_ms >= settings.unknown_halt_ms
                and current.intent_id not in self._escalated
            ):
                self._escalated.add(current.intent_id)
                if self.trading_state() is not TradingState.HALTED:
                    events.append(
                        self._emit(
                            TradingStateEvent,
                            now_ms,
                            scope=ALL_TRADERS,
                            state=TradingState.HALTED,
                            source=StateSource.AUTO,
                            reason=f"order {current.intent_id} unknown for "
                            f"{now_ms - current.since_ms} ms",
                        )
                    )
        return Output(tuple(events), tuple(commands))

    def recover(self, now_ms: int) -> Output:
        """After a replay (or a gateway reconnect): query every order that is not done, so
        nothing that happened while we could not hear is missed. Nothing is resent."""
        commands = tuple(QueryOrder(o.intent_id) for o in self.open_orders())
        for command in commands:
            self._last_query_ms[command.intent_id] = now_ms
        return Output(commands=commands)

    # --- events: the only way the state changes ----------------------------------------------

    def replay(self, events: Iterable[ExecEvent]) -> None:
        """Rebuild the state from journaled events (in `seq` order, from the first)."""
        for event in events:
            self._book.apply(event)

    def _emit(self, kind: type[ExecEvent], ts: int, **fields: object) -> ExecEvent:
        event = kind(seq=self._book.seq + 1, ts=ts, **fields)  # type: ignore[arg-type]
        self._book.apply(event)
        return event

    def _order_event(self, order: Order, ts: int) -> ExecEvent:
        intent = order.intent
        return self._emit(
            OrderEvent,
            ts,
            intent_id=intent.intent_id,
            trader=intent.trader,
            symbol=intent.symbol,
            side=intent.side,
            units=intent.units,
            type=intent.type,
            state=order.state,
            filled_units=order.filled_units,
            avg_fill_price=order.avg_fill_price,
            broker_order_id=order.broker_order_id,
            cancel_requested=order.cancel_requested,
            reason=order.reason[:512],
        )
