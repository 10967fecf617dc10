"""Order intents (`intent_v1`): what a trader asks the execution process to do (DESIGN §16).

Rules: one frozen struct is both the wire payload and the domain value; its constraints mirror
`contracts/public/intent_v1.json` (a test proves they agree). Rules that span fields (a limit
needs a price, a market order has none, stop loss and take profit on the right side) are checked
by `core.validation.intent`, not here. `intent_id` is the idempotency key all the way to the
broker (OANDA `clientExtensions.id`, FXCM custom id): the same id is never a second order.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final

import msgspec

from fxconnector.core.model.bar import EpochMs, Price, Symbol

ID_PATTERN: Final = "^[A-Za-z0-9._:-]+$"
#: OANDA allows 128 characters in a client id; FXCM's custom id is shorter, 64 is safe for both.
IntentId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="Idempotency key, sent to the broker as the order's client id",
    ),
]
TraderId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=ID_PATTERN, description="Trader")
]
Units = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000, description="Order size in units")]


class Side(StrEnum):
    """Buy or sell."""

    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell."""
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    """Market (now, at the touch), limit (at `price` or better), stop (once `price` trades)."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class TimeInForce(StrEnum):
    """Good till cancelled, immediate or cancel (the rest is cancelled), fill or kill (all or
    nothing)."""

    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class OrderIntent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One order a trader wants; `price` only for limit and stop orders.

    `time_in_force` absent means FOK for a market order and GTC for a limit or stop order.
    """

    intent_id: IntentId
    trader: TraderId
    symbol: Symbol
    side: Side
    units: Units
    type: OrderType
    ts: EpochMs
    price: Price | None = None
    time_in_force: TimeInForce | None = None
    stop_loss: Price | None = None
    take_profit: Price | None = None

    @property
    def tif(self) -> TimeInForce:
        """The effective time in force."""
        if self.time_in_force is not None:
            return self.time_in_force
        return TimeInForce.FOK if self.type is OrderType.MARKET else TimeInForce.GTC

    @property
    def signed_units(self) -> int:
        """Units with the side's sign: what a full fill adds to the position."""
        return self.side.sign * self.units
