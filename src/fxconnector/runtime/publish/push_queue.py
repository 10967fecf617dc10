"""What the push fan-out queues for a client: validated entries, notices, and batches encoded
once per selection for all its clients; each client's bounded queue.

Rules:
- A `Batch` holds the entries of one read cycle that one selection (symbols x tfs) selects; its
  SSE body and WebSocket frames are encoded at most once, whoever asks first, and shared by
  every client of that selection. Entry bytes are the ones Redis held (validated, never
  re-encoded). Its ids are the `push_cursor` cursors after each entry, starting from `start`.
- A `Subscription` queues batches and notices up to `limit` entries; one more and it is marked
  overflowed (its queue dropped): the writer then tells the client `slow_consumer` and ends.
  Pushing never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import msgspec

from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish.http_common import error_body
from fxconnector.runtime.publish.push_cursor import Pos, Positions, format_cursor


class Entry(NamedTuple):
    """One validated stream entry."""

    stream: str
    pos: Pos
    id: str
    symbol: str
    tf: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Notice:
    """An error for the client; the stream goes on (unless `final`)."""

    code: str
    message: str
    final: bool = False

    def body(self) -> bytes:
        return error_body(self.code, self.message)


@dataclass(frozen=True, slots=True)
class Selection:
    """What a push client asked for and where it starts (None: the newest entries)."""

    symbols: frozenset[str]
    tfs: frozenset[str]
    positions: Positions | None

    def selects(self, entry: Entry) -> bool:
        return entry.symbol in self.symbols and entry.tf in self.tfs


class _Frame(msgspec.Struct):
    id: str
    event: msgspec.Raw


class _SmcFrame(msgspec.Struct):
    id: str
    smc: msgspec.Raw


class Batch:
    """Entries for one selection, encoded lazily once for all its clients."""

    __slots__ = ("_sse", "_ws", "entries", "name", "start", "streams")

    def __init__(
        self,
        entries: list[Entry],
        start: Mapping[str, Pos],
        streams: dict[str, str],
        name: str = "bar",
    ):
        self.entries = entries
        self.name = name  # "bar" or "smc": the SSE event name, the WebSocket frame's key
        self.start = start  # positions before the first entry (composite cursors start there)
        self.streams = streams
        self._sse: bytes | None = None
        self._ws: list[str] | None = None

    def ids(self) -> list[str]:
        """The cursor after each entry (the SSE `id`, the WebSocket frame's `id`)."""
        if len(self.streams) == 1:
            return [entry.id for entry in self.entries]
        positions = {stream: self.start[stream] for stream in self.streams}
        out = []
        for entry in self.entries:
            positions[entry.stream] = entry.pos
            out.append(format_cursor(positions, self.streams))
        return out

    def sse(self) -> bytes:
        if self._sse is None:
            self._sse = b"".join(
                sse_event(entry_id, entry.data, self.name)
                for entry_id, entry in zip(self.ids(), self.entries, strict=True)
            )
        return self._sse

    def ws(self) -> list[str]:
        if self._ws is None:
            frame = _SmcFrame if self.name == "smc" else _Frame
            self._ws = [
                encode(frame(entry_id, msgspec.Raw(entry.data))).decode()
                for entry_id, entry in zip(self.ids(), self.entries, strict=True)
            ]
        return self._ws


def sse_event(entry_id: str, data: bytes, name: str = "bar") -> bytes:
    """One SSE `bar` (or `smc`) event (multi-line data is split into data lines, as SSE
    requires)."""
    lines = b"".join(b"data: " + line + b"\n" for line in data.splitlines())
    return b"id: " + entry_id.encode() + b"\nevent: " + name.encode() + b"\n" + lines + b"\n"


Item = Batch | Notice | None  # None: nothing for `heartbeat_s` (SSE sends a ping)


class Subscription:
    """One client's bounded queue."""

    def __init__(self, selection: Selection, streams: dict[str, str], limit: int) -> None:
        self.selection = selection
        self.streams = streams
        self._limit = limit
        self._pending: deque[Batch | Notice] = deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self.overflowed = asyncio.Event()
        #: Positions the client already has beyond what the reader had read when it joined.
        self.floor: Positions | None = None

    def push(self, item: Batch | Notice, *, bounded: bool = True) -> None:
        if self.overflowed.is_set():
            return
        size = len(item.entries) if isinstance(item, Batch) else 1
        if bounded and self._queued + size > self._limit:
            self._pending.clear()
            self._queued = 0
            self.overflowed.set()
            self._wake.set()
            return
        self._pending.append(item)
        self._queued += size
        self._wake.set()

    async def take(self, timeout_s: float) -> list[Batch | Notice]:
        """What is queued, waiting up to `timeout_s` ([] when nothing came)."""
        if not self._pending and not self.overflowed.is_set():
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._wake.wait()
        items = list(self._pending)
        self._pending.clear()
        self._queued = 0
        return items


def slow_notice(limit: int) -> Notice:
    return Notice(
        "slow_consumer",
        f"the client fell more than {limit} events behind and was disconnected; reconnect with "
        "Last-Event-ID (or cursor=) set to the last id received",
        final=True,
    )
