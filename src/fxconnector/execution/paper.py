"""The paper broker: deterministic fills from live quotes, with the spread (pure).

Matching rules (every fill is whole: a quote carries no depth):
- market: fills at once at the ask (buy) or the bid (sell) of the latest quote; no quote, or a
  quote older than `max_quote_age_ms`, rejects it;
- limit: a buy fills when the ask is at or below the limit, at the ask; a sell when the bid is at
  or above it, at the bid (at submission or on a later quote);
- stop: a buy triggers when the ask reaches the stop, a sell when the bid does; it fills there;
- time in force: IOC and FOK orders that cannot fill at submission are cancelled; GTC rests;
- stop loss / take profit of a filled order rest as one-cancels-other exits of the filled units on
  the other side (a stop and a limit); their fills are reported on the parent's client id with
  their `side`, so the core applies them to the position.
- `submit` of a client id the broker already has places nothing and returns no evidence: the
  caller learns the order's state from `query` (the same idempotency rule every gateway keeps).

Event-sourced like the core: the state changes only by applying `PaperRecord`s, which the
runtime journals, so the paper broker's books survive a restart of the process like a real
broker's would. Ids are deterministic (`P-1`, `P-1-F1`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from fxconnector.core.model.bar import EpochMs
from fxconnector.core.model.intent import OrderIntent, OrderType, Side, TimeInForce
from fxconnector.core.model.tick import Tick
from fxconnector.execution.messages import (
    GatewayEvent,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderReport,
    ReportState,
    SubmitOrder,
)


class Placed(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind", tag="placed"
):
    """The broker took an order into its books under `broker_order_id`."""

    intent: OrderIntent
    broker_order_id: str
    ts: EpochMs


PaperRecord = Placed | OrderAccepted | OrderRejected | OrderFilled | OrderCancelled


@dataclass(frozen=True, slots=True)
class _Exit:
    kind: OrderType  # STOP (stop loss) or LIMIT (take profit)
    price: float


@dataclass(slots=True)
class _Book:
    intent: OrderIntent
    broker_order_id: str
    state: ReportState = ReportState.WORKING
    filled_units: int = 0
    fills: list[OrderFilled] = field(default_factory=list)
    reason: str = ""
    exits: tuple[_Exit, ...] = ()
    exit_units: int = 0


class PaperBroker:
    """A simulated broker's order book over live quotes."""

    def __init__(self, *, max_quote_age_ms: int = 5_000) -> None:
        self.max_quote_age_ms = max_quote_age_ms
        self._orders: dict[str, _Book] = {}
        #: Per symbol, the books a quote can still fill (working, or with live exits), in order.
        self._live: dict[str, dict[str, None]] = {}
        self._quotes: dict[str, Tick] = {}
        self._placed = 0

    # --- the broker's answers ----------------------------------------------------------------

    def has(self, intent_id: str) -> bool:
        return intent_id in self._orders

    def query(self, intent_id: str, now_ms: int) -> OrderReport:
        """Everything the books say of client id `intent_id`."""
        book = self._orders.get(intent_id)
        if book is None:
            return OrderReport(intent_id=intent_id, ts=now_ms, state=ReportState.NOT_FOUND)
        return OrderReport(
            intent_id=intent_id,
            ts=now_ms,
            state=book.state,
            broker_order_id=book.broker_order_id,
            fills=tuple(book.fills),
            reason=book.reason,
        )

    # --- requests: each returns the records to journal, then apply, then report --------------

    def submit(self, order: SubmitOrder, now_ms: int) -> list[PaperRecord]:
        """Place an order (nothing if its client id is known)."""
        intent = order.intent
        if intent.intent_id in self._orders:
            return []
        placed = Placed(intent, f"P-{self._placed + 1}", now_ms)
        records: list[PaperRecord] = [placed]
        quote = self._quotes.get(intent.symbol)
        if intent.type is OrderType.MARKET and (
            quote is None or now_ms - quote.ts_ms > self.max_quote_age_ms
        ):
            why = "no price" if quote is None else f"price {now_ms - quote.ts_ms} ms old"
            return [*records, OrderRejected(intent.intent_id, now_ms, f"paper: {why}")]
        records.append(OrderAccepted(intent.intent_id, now_ms, placed.broker_order_id))
        fresh = (
            quote if quote is not None and now_ms - quote.ts_ms <= self.max_quote_age_ms else None
        )
        fill = self._match(intent, placed.broker_order_id, 0, fresh, now_ms)
        if fill is not None:
            records.append(fill)
        elif intent.tif is not TimeInForce.GTC:
            records.append(
                OrderCancelled(
                    intent.intent_id, now_ms, f"paper: {intent.tif.value} not marketable"
                )
            )
        return records

    def cancel(self, intent_id: str, now_ms: int) -> list[PaperRecord]:
        """Cancel the working rest of an order (a filled or unknown order: nothing)."""
        book = self._orders.get(intent_id)
        if book is None or book.state is not ReportState.WORKING:
            return []
        return [OrderCancelled(intent_id, now_ms, "cancelled on request")]

    def on_quote(self, tick: Tick) -> list[PaperRecord]:
        """A new quote: fills of resting orders and exits it crosses."""
        current = self._quotes.get(tick.symbol)
        if current is not None and tick.ts_ms < current.ts_ms:
            return []
        self._quotes[tick.symbol] = tick
        records: list[PaperRecord] = []
        for intent_id in self._live.get(tick.symbol, {}):
            book = self._orders[intent_id]
            if book.state is ReportState.WORKING:
                fill = self._match(
                    book.intent, book.broker_order_id, len(book.fills), tick, tick.ts_ms
                )
                if fill is not None:
                    records.append(fill)
            elif book.exits and book.exit_units:
                fill = self._exit(book, tick)
                if fill is not None:
                    records.append(fill)
        return records

    # --- matching ----------------------------------------------------------------------------

    def _match(
        self, intent: OrderIntent, broker_id: str, fills: int, quote: Tick | None, now_ms: int
    ) -> OrderFilled | None:
        if quote is None:
            return None
        buy = intent.side is Side.BUY
        touch = quote.ask if buy else quote.bid
        limit = intent.price
        if intent.type is OrderType.LIMIT and limit is not None:
            crossed = touch <= limit if buy else touch >= limit
        elif intent.type is OrderType.STOP and limit is not None:
            crossed = touch >= limit if buy else touch <= limit
        else:
            crossed = True
        if not crossed:
            return None
        return OrderFilled(
            intent_id=intent.intent_id,
            ts=now_ms,
            fill_id=f"{broker_id}-F{fills + 1}",
            units=intent.units,
            price=touch,
            broker_order_id=broker_id,
        )

    def _exit(self, book: _Book, quote: Tick) -> OrderFilled | None:
        long = book.intent.side is Side.BUY
        touch = quote.bid if long else quote.ask  # an exit trades on the other side
        for exit_ in book.exits:
            if exit_.kind is OrderType.STOP:
                hit = touch <= exit_.price if long else touch >= exit_.price
            else:
                hit = touch >= exit_.price if long else touch <= exit_.price
            if hit:
                return OrderFilled(
                    intent_id=book.intent.intent_id,
                    ts=quote.ts_ms,
                    fill_id=f"{book.broker_order_id}-F{len(book.fills) + 1}",
                    units=book.exit_units,
                    price=touch,
                    broker_order_id=book.broker_order_id,
                    side=Side.SELL if long else Side.BUY,
                )
        return None

    # --- state: only by records --------------------------------------------------------------

    def apply(self, record: PaperRecord) -> None:
        """Apply one record (live after journaling it, or on replay)."""
        intent_id = record.intent.intent_id if isinstance(record, Placed) else record.intent_id
        self._apply(record)
        book = self._orders[intent_id]
        live = self._live.setdefault(book.intent.symbol, {})
        if book.state is ReportState.WORKING or (book.exits and book.exit_units):
            live[intent_id] = None
        else:
            live.pop(intent_id, None)

    def _apply(self, record: PaperRecord) -> None:
        if isinstance(record, Placed):
            self._placed += 1
            self._orders[record.intent.intent_id] = _Book(record.intent, record.broker_order_id)
            return
        book = self._orders[record.intent_id]
        if isinstance(record, OrderRejected):
            book.state, book.reason = ReportState.REJECTED, record.reason
        elif isinstance(record, OrderCancelled):
            book.state, book.reason = ReportState.CANCELLED, record.reason
        elif isinstance(record, OrderFilled):
            book.fills.append(record)
            if record.side is not None and record.side is not book.intent.side:
                book.exit_units -= record.units
                book.exits = ()
                return
            book.filled_units += record.units
            if book.filled_units >= book.intent.units:
                book.state = ReportState.FILLED
            intent = book.intent
            exits = []
            if intent.stop_loss is not None:
                exits.append(_Exit(OrderType.STOP, intent.stop_loss))
            if intent.take_profit is not None:
                exits.append(_Exit(OrderType.LIMIT, intent.take_profit))
            book.exits = tuple(exits)
            book.exit_units += record.units if exits else 0

    def replay(self, records: list[PaperRecord]) -> None:
        for record in records:
            self.apply(record)

    def step(self, records: list[PaperRecord]) -> list[GatewayEvent]:
        """Apply records (already journaled) and return the evidence they are for the core."""
        out: list[GatewayEvent] = []
        for record in records:
            self.apply(record)
            if not isinstance(record, Placed):
                out.append(record)
        return out
