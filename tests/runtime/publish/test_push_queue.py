"""Per-client queues and shared batches of the push fan-out."""

from __future__ import annotations

import asyncio
import json

from fxconnector.runtime.publish.push_queue import Batch, Entry, Notice, Selection, Subscription

A, B = "ns:ohlcv:events:{EURUSD}", "ns:ohlcv:events:{GBPUSD}"
STREAMS = {A: "EURUSD", B: "GBPUSD"}


def entry(stream: str, ms: int, symbol: str) -> Entry:
    return Entry(stream, (ms, 0), f"{ms}-0", symbol, "1m", b'{"n":%d}' % ms)


def test_a_batch_is_encoded_once_with_composite_cursors() -> None:
    batch = Batch([entry(A, 5, "EURUSD"), entry(B, 7, "GBPUSD")], {A: (1, 0), B: (2, 0)}, STREAMS)
    assert batch.ids() == ["EURUSD:5-0,GBPUSD:2-0", "EURUSD:5-0,GBPUSD:7-0"]
    assert batch.sse() is batch.sse()  # shared by every client of the selection
    assert batch.sse().startswith(b'id: EURUSD:5-0,GBPUSD:2-0\nevent: bar\ndata: {"n":5}\n\n')
    frames = [json.loads(frame) for frame in batch.ws()]
    assert frames[1] == {"id": "EURUSD:5-0,GBPUSD:7-0", "event": {"n": 7}}
    single = Batch([entry(A, 5, "EURUSD")], {A: (1, 0)}, {A: "EURUSD"})
    assert single.ids() == ["5-0"]


def test_a_queue_overflows_instead_of_growing_and_then_takes_nothing() -> None:
    async def main() -> tuple[list[Batch | Notice], bool, list[Batch | Notice]]:
        sub = Subscription(Selection(frozenset({"EURUSD"}), frozenset({"1m"}), None), STREAMS, 3)
        sub.push(Batch([entry(A, 1, "EURUSD"), entry(A, 2, "EURUSD")], {A: (0, 0)}, STREAMS))
        sub.push(Notice("unavailable", "x"))
        first = await sub.take(0.01)
        sub.push(Batch([entry(A, 3, "EURUSD")] * 4, {A: (2, 0)}, STREAMS))  # 4 > 3
        sub.push(Notice("unavailable", "y"))  # ignored once overflowed
        return first, sub.overflowed.is_set(), await sub.take(0.01)

    first, overflowed, after = asyncio.run(main())
    assert len(first) == 2
    assert overflowed
    assert after == []
