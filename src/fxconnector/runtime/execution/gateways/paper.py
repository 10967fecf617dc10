"""The paper gateway: `PaperBroker` behind the `OrderGateway` port, its books journaled.

Rules: every change of the paper books is journaled (fsync) under `<root>` before it is
reported, and the books are replayed on start, so a paper order survives a restart of the
process the way an order at a real broker does (and a restart can test the core's recovery:
an order may be in the books although the core never heard the ack). Quotes come in through
`on_quote` (the exec process feeds it the surface's live ticks). No I/O besides the journal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from fxconnector.core.model.tick import Tick
from fxconnector.execution.messages import GatewayEvent, OrderReport, SubmitOrder
from fxconnector.execution.paper import PaperBroker, PaperRecord
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.execution.journal import Journal

PAPER_JOURNAL: Final = "paper.jsonl"


class PaperGateway:
    """Paper orders: deterministic fills at the live bid/ask."""

    def __init__(self, root: Path, clock: Clock, *, max_quote_age_ms: int = 5_000) -> None:
        self._clock = clock
        self._broker = PaperBroker(max_quote_age_ms=max_quote_age_ms)
        self._journal: Journal[PaperRecord] = Journal(root, PaperRecord, name=PAPER_JOURNAL)
        self._queue: asyncio.Queue[GatewayEvent | None] = asyncio.Queue()
        self._open = False

    @property
    def name(self) -> str:
        return "paper"

    async def start(self) -> None:
        """Take the paper books' lock (StoreLocked if another process has them) and replay them."""
        self._broker.replay(self._journal.open())
        self._open = True

    def _commit(self, records: list[PaperRecord]) -> None:
        self._journal.append(records)
        for event in self._broker.step(records):
            self._queue.put_nowait(event)

    async def submit(self, order: SubmitOrder) -> OrderReport:
        now_ms = self._clock.now_ms()
        self._commit(self._broker.submit(order, now_ms))
        return self._broker.query(order.intent.intent_id, now_ms)

    async def cancel(self, intent_id: str) -> None:
        self._commit(self._broker.cancel(intent_id, self._clock.now_ms()))

    async def query(self, intent_id: str) -> OrderReport:
        return self._broker.query(intent_id, self._clock.now_ms())

    def on_quote(self, tick: Tick) -> None:
        """A live quote: fills of resting orders and exits it crosses are reported."""
        self._commit(self._broker.on_quote(tick))

    async def events(self) -> AsyncIterator[GatewayEvent]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    async def close(self) -> None:
        if self._open:
            self._open = False
            self._journal.close()
            self._queue.put_nowait(None)
