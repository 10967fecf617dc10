"""The broker port (DESIGN §10): one shape for every broker.

Rules:
- Ticks are stamped with the broker's own time (`ts_ms`), never the receipt time.
- `history_1m` returns a `HistoryAnswer`: the broker's own final 1m bars for `[from_ms, to_ms)`
  as final events (`complete=true`, `source=history`, `event_ts=close_ms`, `rev=0`), converted
  from the broker's open-stamped candles at this edge. A bad candle rejects itself only: it is
  left out of `bars` and listed in `rejected` (with its minute when that is readable), the rest
  of the answer is kept. An answer may end early (truncated, or the broker's history lags
  "now"): the caller decides what is quiet with `core.coverage.prove_quiet`, never the adapter.
  Raises TransientIOError (retryable) or BadBrokerData when the answer as a whole is unusable.
- Session state changes are reported as `SessionEvent`s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True)
class RejectedCandle:
    """A candle of a history answer that failed our checks; it is never stored."""

    open_ms: int | None  # its minute, None when even that was unreadable
    reason: str  # a short stable code, e.g. `price_not_positive`, counted by the pipeline
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HistoryAnswer:
    """One history answer: the good bars (ascending), the refused candles, and the broker's own
    completeness signal when it has one (every minute before `passed_until_ms` has ended in its
    history, e.g. OANDA answered a candle at or after that minute)."""

    bars: list[OhlcvEvent]
    rejected: list[RejectedCandle] = field(default_factory=list)
    passed_until_ms: int | None = None
    #: Minutes the broker has a candle for that is not final yet (OANDA `complete: false`):
    #: never quiet, never stored.
    unfinished: list[int] = field(default_factory=list)
    #: `[from_ms, to_ms)` ranges inside the answer that the broker did not provably pass even
    #: where later bars exist (an FXCM sub-request that came back without a row): never quiet.
    unproven: list[tuple[int, int]] = field(default_factory=list)


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

    async def history_1m(self, symbol: str, from_ms: int, to_ms: int) -> HistoryAnswer:
        """The broker's final 1m bars with `from_ms <= open_ms < to_ms`, ascending."""
        ...

    def session_events(self) -> AsyncIterator[SessionEvent]:
        """Session state changes, until closed."""
        ...
