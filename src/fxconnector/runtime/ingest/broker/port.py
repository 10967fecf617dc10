"""The broker port (DESIGN §10): one shape for every broker.

Rules:
- Ticks are stamped with the broker's own time (`ts_ms`), never the receipt time.
- `history_1m` returns the broker's own final 1m bars for `[from_ms, to_ms)` as final events
  (`complete=true`, `source=history`, `event_ts=close_ms`, `rev=0`), converted from the broker's
  open-stamped candles at this edge. A minute with no bar in the answer is *quiet*. Raises
  TransientIOError (retryable) or BadBrokerData; never returns partial data silently.
- Session state changes are reported as `SessionEvent`s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.status import BrokerState
from fxconnector.core.model.tick import Tick


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """A change of the broker session's state."""

    ts_ms: int
    state: BrokerState
    detail: str = ""


class BrokerPort(Protocol):
    """What the connector needs from any broker."""

    @property
    def kind(self) -> str:
        """`sim`, `replay`, `fxcm` or `oanda`."""
        ...

    async def connect(self) -> None:
        """Open the session (and subscriptions)."""
        ...

    async def close(self) -> None:
        """Close the session; idempotent."""
        ...

    def ticks(self) -> AsyncIterator[Tick]:
        """Ticks as they arrive, until closed."""
        ...

    async def history_1m(self, symbol: str, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
        """The broker's final 1m bars with `from_ms <= open_ms < to_ms`, ascending."""
        ...

    def session_events(self) -> AsyncIterator[SessionEvent]:
        """Session state changes, until closed."""
        ...
