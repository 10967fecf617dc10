"""The port every order gateway implements (paper, OANDA, FXCM).

Rules:
- The broker-side client id of an order is always its `intent_id`; `submit` of an id the broker
  already has returns without placing a second order (the paper gateway guarantees it; a real
  broker's own rule, e.g. OANDA's "only among pending orders", is not enough on its own, which
  is why the core never resends: see `fxconnector.execution.core`).
- `submit` returns the broker's report of the order with that client id (the existing one when
  the id is known: nothing new is placed); `cancel` returns once the request was handed over.
  What the broker does comes as evidence on `events()` (accepted, filled, rejected, cancelled,
  expired); a report and the stream may tell the same fill twice (the core applies it once).
- A timeout or a broken connection raises `TransientIOError` (or a child): the caller turns it
  into `TransportFailed` evidence, so the order becomes UNKNOWN, never resent.
- `query` answers from the broker's own books by client id (an `OrderReport`, NOT_FOUND when it
  has no such order).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from fxconnector.execution.messages import GatewayEvent, OrderReport, SubmitOrder


class OrderGateway(Protocol):
    """A broker's order side."""

    @property
    def name(self) -> str:
        """`paper`, `oanda` or `fxcm`."""
        ...

    async def start(self) -> None:
        """Connect (or open the paper books); evidence flows on `events()` from here on."""
        ...

    async def submit(self, order: SubmitOrder) -> OrderReport:
        """Place the order with client id `order.intent.intent_id` (idempotent by that id) and
        return the broker's report of it."""
        ...

    async def cancel(self, intent_id: str) -> None:
        """Cancel what is left of the order with client id `intent_id`."""
        ...

    async def query(self, intent_id: str) -> OrderReport:
        """What the broker knows of client id `intent_id`."""
        ...

    def events(self) -> AsyncIterator[GatewayEvent]:
        """Evidence as the broker reports it, in its order; ends when the gateway closes."""
        ...

    async def close(self) -> None:
        """Stop the stream and release the connection."""
        ...
