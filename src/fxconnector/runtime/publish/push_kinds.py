"""One push client over one or two kinds of entries: bar events, SMC hints, or both.

Rules:
- One kind (`kinds=bars`, the default, or `kinds=smc`): the client follows that kind's fan-out
  exactly as before; its ids are that kind's cursors.
- Both (`kinds=bars,smc`): the client follows both fan-outs at once, each from its own
  position; entries go out in the order they are read (each kind in its stream order). Every
  id is the composite `<bars cursor>|<smc cursor>`: the position in both after that entry, so
  `Last-Event-ID` resumes both exactly. A client without a cursor starts from each reader's
  position at connect time (so its first id already names both). Notices of either kind go
  out; a final one (slow_consumer, internal) ends the client. Batches are re-labelled per
  client (their shared encodings carry one kind's ids only).
- The merge holds at most a few batches: a client that does not read makes its fan-out queues
  fill and is cut off as slow, as with one kind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace
from typing import Final

from fxconnector.core.errors import SurfaceUnavailable
from fxconnector.runtime.publish.fanout import Fanout
from fxconnector.runtime.publish.push_cursor import format_cursor
from fxconnector.runtime.publish.push_queue import Batch, Item, Notice, Selection, Subscription

_END: Final = object()
_MERGE_QUEUE: Final = 4


class Relabeled(Batch):
    """A batch with the ids of a client of several kinds."""

    __slots__ = ("_labels",)

    def __init__(self, batch: Batch, labels: list[str]) -> None:
        super().__init__(batch.entries, batch.start, batch.streams, batch.name)
        self._labels = labels

    def ids(self) -> list[str]:
        return self._labels


class PushFeeds:
    """The process's fan-outs by kind (`smc` is None while the SMC layer is off)."""

    def __init__(self, bars: Fanout, smc: Fanout | None) -> None:
        self.bars = bars
        self.smc = smc

    def fanout(self, kind: str) -> Fanout:
        chosen = self.smc if kind == "smc" else self.bars
        assert chosen is not None  # parse_stream_request refuses smc while it is off
        return chosen

    async def follow(
        self, selections: Sequence[tuple[str, Selection]], timeout_s: float
    ) -> tuple[AsyncGenerator[Item, None], list[Subscription]]:
        """The items of a client of `selections` and its subscriptions (for the slow check)."""
        if len(selections) == 1:
            kind, selection = selections[0]
            fanout = self.fanout(kind)
            sub = fanout.subscription(selection)
            return fanout.follow(sub), [sub]
        parts: list[tuple[Fanout, Subscription, str]] = []
        for kind, selection in selections:
            fanout = self.fanout(kind)
            streams = fanout.streams_for(selection.symbols)
            positions = selection.positions
            if positions is None:
                try:
                    positions = await fanout.now(streams, timeout_s)
                except SurfaceUnavailable:
                    positions = None  # the stream says so; this kind starts from "now"
            sub = fanout.subscription(replace(selection, positions=positions))
            start = format_cursor(positions, streams) if positions is not None else ""
            parts.append((fanout, sub, start))
        return _merged(parts), [sub for _, sub, _ in parts]


async def _merged(parts: list[tuple[Fanout, Subscription, str]]) -> AsyncGenerator[Item, None]:
    queue: asyncio.Queue[tuple[int, object]] = asyncio.Queue(_MERGE_QUEUE)
    texts = [start for _, _, start in parts]

    async def pump(index: int, fanout: Fanout, sub: Subscription) -> None:
        try:
            async with contextlib.aclosing(fanout.follow(sub)) as items:
                async for item in items:
                    await queue.put((index, item))
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait((index, _END))

    pumps = [
        asyncio.create_task(pump(index, fanout, sub))
        for index, (fanout, sub, _) in enumerate(parts)
    ]
    try:
        while True:
            index, item = await queue.get()
            if item is _END:
                return
            if item is None:
                yield None
            elif isinstance(item, Notice):
                yield item
                if item.final:
                    return
            else:
                assert isinstance(item, Batch)
                labels = []
                for entry_id in item.ids():
                    texts[index] = entry_id
                    labels.append("|".join(texts))
                yield Relabeled(item, labels)
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
