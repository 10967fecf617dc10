"""The port every order gateway implements (paper, OANDA, FXCM).

Rules:
- The broker-side client id of an order is always its `intent_id`; `submit` of an id the broker
  already has returns without placing a second order (the paper gateway guarantees it; a real
  broker's own rule, e.g. OANDA's "only among pending orders", is not enough on its own, which
  is why the core never resends: see `fxconnector.execution.core`).
- `submit` and `cancel` return once the request was handed over; what the broker did comes as
  evidence on `events()` (accepted, filled, rejected, cancelled, expired).
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

    async def submit(self, order: SubmitOrder) -> None:
        """Place the order with client id `order.intent.intent_id` (idempotent by that id)."""
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
