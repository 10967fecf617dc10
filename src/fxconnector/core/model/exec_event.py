"""Execution events (`exec_event_v1`): everything the execution process decides or learns.

Rules: the events are the execution journal (one line holds the events of one decision, written
at once) and the public stream `NS:exec:events` at once: the core's whole state (orders, fills,
positions, rate windows, trading states) is rebuilt by replaying them in order, so every fact the
core needs is in an event, and nothing else is.
`seq` grows by one per event of a journal. Tagged by `kind`:

- `risk`: the decision on an intent (allow or deny with a stable reason code), carrying the intent;
- `order`: an order's state after a change (and the cumulative fill so far);
- `fill`: one execution, keyed by the broker's `fill_id` (a fill is applied once, however often it
  is reported); `late` marks a fill that arrived after the order was cancelled, expired or
  rejected;
- `position`: a trader's position in a symbol after a fill, with realised P&L (in the symbol's
  quote currency), in total and for the trading day that starts at `day_open_ms`;
- `trading_state`: ACTIVE / REDUCING / HALTED of one trader or of everyone (`scope` "*").
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final

import msgspec

from fxconnector.core.model.bar import EpochMs, Price, Symbol
from fxconnector.core.model.intent import IntentId, OrderIntent, OrderType, Side, TraderId, Units

ALL_TRADERS: Final = "*"

Seq = Annotated[int, msgspec.Meta(ge=1, description="Position of the event in its journal")]
FilledUnits = Annotated[int, msgspec.Meta(ge=0, le=10_000_000_000)]
SignedUnits = Annotated[int, msgspec.Meta(ge=-10_000_000_000, le=10_000_000_000)]
Text = Annotated[str, msgspec.Meta(max_length=512)]
BrokerId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Scope = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern="^([A-Za-z0-9._:-]+|\\*)$",
        description="A trader, or * for every trader",
    ),
]
Money = Annotated[float, msgspec.Meta(description="Quote-currency amount")]


class OrderState(StrEnum):
    """Where an order stands. Terminal: FILLED, CANCELLED, REJECTED, EXPIRED (a late fill may
    still arrive after the last three). UNKNOWN: we asked the broker and do not know whether it
    has the order; only evidence from the broker leaves it, never a resend."""

    NEW = "NEW"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    UNKNOWN = "UNKNOWN"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: Final = frozenset(
    {OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED}
)


class TradingState(StrEnum):
    """ACTIVE: everything the limits allow. REDUCING: only orders that reduce exposure.
    HALTED: no new orders, only cancels."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class Decision(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class RiskReason(StrEnum):
    """Why an intent was denied. Stable: clients, status and the journal use these codes."""

    UNKNOWN_TRADER = "unknown_trader"
    SYMBOL_NOT_ALLOWED = "symbol_not_allowed"
    INVALID_INTENT = "invalid_intent"
    STALE_INTENT = "stale_intent"
    INTENT_ID_CONFLICT = "intent_id_conflict"
    TRADING_HALTED = "trading_halted"
    REDUCING_ONLY = "reducing_only"
    MARKET_CLOSED = "market_closed"
    NO_PRICE = "no_price"
    STALE_PRICE = "stale_price"
    MAX_UNITS_PER_ORDER = "max_units_per_order"
    MAX_OPEN_POSITION = "max_open_position"
    MAX_NOTIONAL = "max_notional"
    MAX_ORDERS_PER_MINUTE = "max_orders_per_minute"
    DAILY_LOSS_LIMIT = "daily_loss_limit"


class StateSource(StrEnum):
    """Who switched a trading state: an operator's command or the core itself."""

    COMMAND = "command"
    AUTO = "auto"


class _Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind"):
    seq: Seq
    ts: EpochMs


class RiskEvent(_Event, frozen=True, tag="risk"):
    """The decision on an intent; `reason` is set exactly when it is a deny."""

    intent: OrderIntent
    decision: Decision
    reason: RiskReason | None = None
    detail: Text = ""


class OrderEvent(_Event, frozen=True, tag="order"):
    """An order's state after a change; `filled_units` and `avg_fill_price` are cumulative."""

    intent_id: IntentId
    trader: TraderId
    symbol: Symbol
    side: Side
    units: Units
    type: OrderType
    state: OrderState
    filled_units: FilledUnits = 0
    avg_fill_price: Price | None = None
    broker_order_id: BrokerId | None = None
    cancel_requested: bool = False
    reason: Text = ""


class FillEvent(_Event, frozen=True, tag="fill"):
    """One execution of an order, applied once per `fill_id`."""

    intent_id: IntentId
    trader: TraderId
    symbol: Symbol
    side: Side
    units: Units
    price: Price
    fill_id: BrokerId
    late: bool = False


class PositionEvent(_Event, frozen=True, tag="position"):
    """A trader's net position in a symbol (positive long, negative short) after a fill."""

    trader: TraderId
    symbol: Symbol
    units: SignedUnits
    avg_price: Price | None
    realised_pnl: Money
    day_open_ms: EpochMs
    day_realised_pnl: Money


class TradingStateEvent(_Event, frozen=True, tag="trading_state"):
    """A trading state switched, for one trader or every trader (`scope` "*")."""

    scope: Scope
    state: TradingState
    source: StateSource
    reason: Text = ""


ExecEvent = RiskEvent | OrderEvent | FillEvent | PositionEvent | TradingStateEvent
