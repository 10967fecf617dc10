"""One reader of the events stream(s) per process, fanned out to every SSE and WebSocket client.

Rules:
- One task (`Fanout.run`, started with the first client) reads Redis on its own connection and
  hands each batch of new entries to every client: per selection (symbols x tfs) the entries
  are filtered once and encoded once (`Batch`), then queued on each client of that selection.
  Redis load does not grow with the number of clients.
- Reading: the single-node layout is one stream, read with blocking XREADs (`block_ms`). The
  cluster layout is one stream per symbol: one non-blocking XREAD per stream, pipelined, every
  `poll_ms` while idle and at once again while entries keep coming (RedisCluster refuses a
  multi-key XREAD across slots, and one blocked connection per symbol does not scale).
- What it reads is its feed's (`push_feed`): the bar events stream(s) (`BarFeed`), or the SMC
  hint stream(s) (`runtime.smc.push.SmcFeed`, a second fan-out of the process).
- Every entry is validated by its feed (`event_check`, `runtime.smc.check`) before it is kept
  or queued; an invalid one is skipped, counted (`fxconnector_push_invalid_events`) and
  sampled for status `errors[]`. An entry whose key was already passed on with the same or a
  higher rev (a final republished with the writer's tail after a Redis outage, a hint id) is
  skipped and counted as a duplicate.
- Per-client queues are bounded (`client_queue` entries). A client that lets its queue fill is
  disconnected with a reason (`slow_consumer`: SSE `event: error`, WebSocket close 1013) and
  resumes by cursor (SSE: Last-Event-ID). Nothing ever waits on a client.
- A client with a cursor first catches up, at its own pace, with bounded XREADs from Redis (on
  the request connections, not the fan-out's) until its position is inside the in-memory
  window of the last `window` entries; then, without an await in between, the rest of its
  backlog is taken from the window and it joins the live fan-out: no gap and no duplicate.
  A cursor ahead of what the reader has read (a fresh /api/bars cursor while the reader lags)
  joins at once, and what the reader then reads up to that cursor is not sent to it.
  A cursor older than the oldest entry Redis still keeps gets a `cursor_expired` notice (the
  client reloads /api/bars), then the stream goes on from what is left.
- Redis trouble never ends a stream: every client gets an `unavailable` notice (once per outage)
  and the reader retries from where it stood with capped exponential backoff and jitter.
- In a shared namespace (`served_symbols`) the cluster layout's reader also reads the streams
  of symbols other processes publish: those found later are read from their newest entry on
  when the reader or a client first needs them.
- Cursors are the `push_cursor` ones: a stream id in the single layout and for one symbol; a
  composite per-symbol cursor for several symbols in the cluster layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fxconnector.core.errors import SurfaceUnavailable
from fxconnector.runtime.publish.event_check import EventCheck
from fxconnector.runtime.publish.http_common import PushSettings
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.push_cursor import ZERO, Positions, format_id
from fxconnector.runtime.publish.push_feed import BarFeed, Checked, Feed
from fxconnector.runtime.publish.push_queue import (
    Batch,
    Entry,
    Item,
    Notice,
    Selection,
    Subscription,
    slow_notice,
)
from fxconnector.runtime.publish.served_symbols import ServedSymbols
from fxconnector.runtime.publish.surface_reader import SurfaceReader, parse_stream_id

log = logging.getLogger(__name__)

#: Final keys remembered per series for the duplicate check.
SEEN_FINALS_PER_SERIES: Final = 4096


@dataclass(slots=True)
class FanoutStats:
    invalid: int = 0
    duplicates: int = 0
    slow_clients: int = 0
    entries: int = 0


class _Group:
    __slots__ = ("selection", "streams", "subs")

    def __init__(self, selection: Selection, streams: dict[str, str]) -> None:
        self.selection = selection
        self.streams = streams
        self.subs: set[Subscription] = set()


class Fanout:
    """The one events reader of a process (module rules)."""

    def __init__(
        self,
        reader: SurfaceReader,
        catch_up: SurfaceReader,
        check: EventCheck | Feed,
        symbols: tuple[str, ...],
        settings: PushSettings,
        until: Callable[[], Awaitable[None]] | None = None,
        served: ServedSymbols | None = None,
    ) -> None:
        self._until = until
        self._served = served
        self._reader = reader
        self._catch_up = catch_up
        self._feed: Feed = BarFeed(check) if isinstance(check, EventCheck) else check
        self._keys: SurfaceKeys = reader.keys
        self._settings = settings
        self._streams = self._feed.streams(self._keys, symbols)
        self._head: Positions = {}
        self._base: Positions = {}
        self._window: deque[Entry] = deque()
        self._groups: dict[tuple[frozenset[str], frozenset[str]], _Group] = {}
        self._seen: dict[tuple[str, str], OrderedDict[int | str, int]] = {}
        self._ready = asyncio.Event()
        self._catch_ups = asyncio.Semaphore(settings.catch_up_reads)
        self._task: asyncio.Task[None] | None = None
        self._outage = False
        self._last_error = ""
        self.stats = FanoutStats()

    @property
    def clients(self) -> int:
        return sum(len(group.subs) for group in self._groups.values())

    @property
    def feed(self) -> Feed:
        return self._feed

    def streams_for(self, symbols: frozenset[str]) -> dict[str, str]:
        return self._feed.streams(self._keys, symbols)

    async def now(self, streams: dict[str, str], timeout_s: float) -> Positions:
        """The reader's current position in each of `streams` (a client that starts "now"
        from these gets exactly what a cursor-less client would). SurfaceUnavailable when
        the reader cannot reach Redis within `timeout_s`."""
        self.start()
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            raise SurfaceUnavailable(self._last_error or "waiting for Redis") from None
        if any(stream not in self._head for stream in streams):
            await self._add_streams(streams)
        return {stream: self._head[stream] for stream in streams}

    def start(self) -> None:
        """Start the reader (once; the first client does it). It ends with `close()`, or when
        `until` (e.g. the server's shutdown switch) returns."""
        if self._task is None:
            self._task = asyncio.create_task(self._run_until(), name="push-fanout")

    async def _run_until(self) -> None:
        reader = asyncio.ensure_future(self.run())
        waits: list[asyncio.Future[None]] = [reader]
        if self._until is not None:
            waits.append(asyncio.ensure_future(self._until()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        if not reader.cancelled() and reader.exception() is not None:
            # A bug: logged, every client told to reconnect; the next client restarts it.
            log.error("push fan-out failed", exc_info=reader.exception())
            self._task = None
            self._broadcast(Notice("internal", "the push reader failed; reconnect", final=True))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # --- the reader ---------------------------------------------------------------------------

    async def run(self) -> None:
        delay_s = self._settings.backoff_initial_s
        while True:
            try:
                if not self._ready.is_set():
                    for stream in self._streams:
                        pos = parse_stream_id(await self._reader.last_id(stream))
                        self._head[stream] = self._base[stream] = pos
                    self._ready.set()
                await self._add_served()
                more = await self._read_once()
            except SurfaceUnavailable as exc:
                self._last_error = str(exc)[:500]
                if not self._outage:
                    self._outage = True
                    self._broadcast(Notice("unavailable", str(exc)[:500]))
                jitter = random.uniform(0.5, 1.0)  # noqa: S311 - backoff jitter, not a secret
                await asyncio.sleep(delay_s * jitter)
                delay_s = min(delay_s * 2, self._settings.backoff_max_s)
                continue
            self._outage = False
            delay_s = self._settings.backoff_initial_s
            if not more and self._keys.cluster:
                await asyncio.sleep(self._settings.poll_ms / 1000)

    async def _add_served(self) -> None:
        """Cluster layout: read the streams of symbols the served set gained (another process
        of the namespace started them), each from its newest entry on."""
        if self._served is None or not self._keys.cluster:
            return
        await self._served.refresh_if_due()
        await self._add_streams(self._feed.streams(self._keys, self._served.current()))

    async def _add_streams(self, streams: dict[str, str]) -> None:
        for stream, symbol in streams.items():
            if stream in self._head:
                continue
            pos = parse_stream_id(await self._reader.last_id(stream))
            if stream not in self._head:  # not added meanwhile (no await from here)
                self._streams[stream] = symbol
                self._head[stream] = self._base[stream] = pos

    async def _read_once(self) -> bool:
        """Read and fan out one batch; True when a stream may have more right away."""
        count = self._settings.batch
        if not self._keys.cluster:
            (stream,) = self._streams
            got = await self._reader.read_events(
                format_id(self._head[stream]),
                block_ms=self._settings.block_ms,
                count=count,
                stream=stream,
            )
            read = {stream: got} if got else {}
        else:
            read = await self._reader.read_streams(
                {stream: format_id(pos) for stream, pos in self._head.items()}, count=count
            )
        start = dict(self._head)
        entries: list[Entry] = []
        for stream, items in read.items():
            for entry_id, data in items:
                entry = self._entry(stream, entry_id, data)
                self._head[stream] = parse_stream_id(entry_id)
                if entry is not None and not self._duplicate(*entry):
                    entries.append(entry[0])
        self._keep(entries)
        self._fan_out(entries, start)
        return any(len(items) >= count for items in read.values())

    def _entry(self, stream: str, entry_id: str, data: bytes) -> tuple[Entry, Checked] | None:
        symbol = self._streams.get(stream) or None
        checked = self._feed.check(data, f"{stream} {entry_id}", symbol)
        if checked is None:
            self.stats.invalid += 1
            return None
        pos = parse_stream_id(entry_id)
        return Entry(stream, pos, entry_id, checked.symbol, checked.tf, data), checked

    def _duplicate(self, entry: Entry, checked: Checked) -> bool:
        """True for a key already passed on with the same or a higher rev (a final, a hint)."""
        if checked.key is None:
            return False
        seen = self._seen.setdefault((entry.symbol, entry.tf), OrderedDict())
        rev = seen.get(checked.key)
        if rev is not None and rev >= checked.rev:
            self.stats.duplicates += 1
            return True
        seen[checked.key] = checked.rev
        if len(seen) > SEEN_FINALS_PER_SERIES:
            seen.popitem(last=False)
        return False

    def _keep(self, entries: list[Entry]) -> None:
        self.stats.entries += len(entries)
        self._window.extend(entries)
        while len(self._window) > self._settings.window:
            dropped = self._window.popleft()
            self._base[dropped.stream] = dropped.pos

    def _fan_out(self, entries: list[Entry], start: Positions) -> None:
        if not entries:
            return
        for group in list(self._groups.values()):
            selected = [entry for entry in entries if group.selection.selects(entry)]
            if not selected:
                continue
            batch = Batch(selected, start, group.streams, self._feed.name)
            for sub in list(group.subs):
                if sub.floor is None:
                    sub.push(batch)
                else:
                    self._push_above_floor(sub, batch)
                if sub.overflowed.is_set():
                    self.stats.slow_clients += 1
                    group.subs.discard(sub)

    def _push_above_floor(self, sub: Subscription, batch: Batch) -> None:
        """Push only what follows the client's cursor: it joined with a cursor ahead of what
        the reader had read (e.g. /api/bars' newest snapshot cursor while the reader lagged)."""
        floor = sub.floor or {}
        kept = [entry for entry in batch.entries if entry.pos > floor.get(entry.stream, ZERO)]
        if all(self._head[stream] >= pos for stream, pos in floor.items()):
            sub.floor = None  # the reader has passed it: the shared batches fit from now on
        if kept:
            start = {s: max(pos, floor.get(s, ZERO)) for s, pos in batch.start.items()}
            sub.push(Batch(kept, start, sub.streams, self._feed.name))

    def _broadcast(self, notice: Notice) -> None:
        for group in self._groups.values():
            for sub in group.subs:
                sub.push(notice)

    # --- the clients --------------------------------------------------------------------------

    async def follow(self, sub: Subscription) -> AsyncGenerator[Item, None]:
        """Everything `sub` selected after its cursor, then live, forever (module rules)."""
        self.start()
        while not self._ready.is_set():  # Redis was down when the reader started
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.heartbeat_s):
                    await self._ready.wait()
            if not self._ready.is_set():
                yield Notice("unavailable", self._last_error or "waiting for Redis")
        try:
            if any(stream not in self._head for stream in sub.streams):
                # A symbol the reader has not read yet (just found in the namespace).
                await self._add_streams(sub.streams)
            positions = sub.selection.positions
            if positions is not None:
                async for item in self._catch_up_to_window(sub, positions):
                    yield item
            self._join(sub, positions)
            while True:
                items = await sub.take(self._settings.heartbeat_s)
                if sub.overflowed.is_set():
                    yield slow_notice(self._settings.client_queue)
                    return
                if not items:
                    yield None
                for item in items:
                    yield item
        finally:
            self._leave(sub)

    async def _catch_up_to_window(
        self, sub: Subscription, positions: Positions
    ) -> AsyncIterator[Batch | Notice]:
        """Batches read from Redis until `positions` (updated in place) are in the window."""
        for notice in await self._expired(positions):
            yield notice
        delay_s = self._settings.backoff_initial_s
        while True:
            behind = {
                stream: format_id(pos)
                for stream, pos in positions.items()
                if pos < self._base[stream]
            }
            if not behind:
                return
            try:
                async with self._catch_ups:
                    read = await self._catch_up.read_streams(behind, count=self._settings.batch)
            except SurfaceUnavailable as exc:
                yield Notice("unavailable", str(exc)[:500])
                await asyncio.sleep(delay_s * random.uniform(0.5, 1.0))  # noqa: S311
                delay_s = min(delay_s * 2, self._settings.backoff_max_s)
                continue
            delay_s = self._settings.backoff_initial_s
            start = dict(positions)
            selected: list[Entry] = []
            for stream in behind:
                items = read.get(stream)
                if not items:
                    # Nothing after it in Redis although the window starts later: the stream
                    # was recreated or trimmed meanwhile; the window holds what follows.
                    positions[stream] = self._base[stream]
                    continue
                for entry_id, data in items:
                    pos = parse_stream_id(entry_id)
                    if pos > self._base[stream]:
                        # The window has it from here (whatever Redis still had up to the
                        # window's start was read: the entry at the start may be trimmed).
                        positions[stream] = self._base[stream]
                        break
                    positions[stream] = pos
                    checked = self._entry(stream, entry_id, data)
                    if checked is not None and sub.selection.selects(checked[0]):
                        selected.append(checked[0])
            if selected:
                yield Batch(selected, start, sub.streams, self._feed.name)

    async def _expired(self, positions: Positions) -> list[Notice]:
        out: list[Notice] = []
        for stream, pos in positions.items():
            if pos == (0, 0) or pos >= self._base[stream]:
                continue
            try:
                oldest = await self._catch_up.first_id(stream)
            except SurfaceUnavailable:
                break  # the catch-up reports it
            if oldest is not None and pos < parse_stream_id(oldest):
                out.append(
                    Notice(
                        "cursor_expired",
                        f"entries after {format_id(pos)} were trimmed (oldest kept: {oldest}); "
                        "reload /api/bars",
                    )
                )
        return out

    def _join(self, sub: Subscription, positions: Positions | None) -> None:
        """Queue the window's entries after `positions`, then go live (no await: no gap)."""
        if positions is not None:
            replay = self._replay(sub, positions)
            if replay:
                sub.push(
                    Batch(replay, dict(positions), sub.streams, self._feed.name), bounded=False
                )
            ahead = {s: pos for s, pos in positions.items() if pos > self._head[s]}
            sub.floor = ahead or None
        key = (sub.selection.symbols, sub.selection.tfs)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(sub.selection, sub.streams)
        group.subs.add(sub)

    def _replay(self, sub: Subscription, positions: Positions) -> list[Entry]:
        """The window's selected entries after `positions`, scanning back from the newest."""
        open_streams = set(positions)
        out: list[Entry] = []
        for entry in reversed(self._window):
            if entry.stream not in open_streams:
                if not open_streams:
                    break
                continue
            if entry.pos <= positions[entry.stream]:
                open_streams.discard(entry.stream)
                continue
            if sub.selection.selects(entry):
                out.append(entry)
        out.reverse()
        return out

    def _leave(self, sub: Subscription) -> None:
        key = (sub.selection.symbols, sub.selection.tfs)
        group = self._groups.get(key)
        if group is not None:
            group.subs.discard(sub)
            if not group.subs:
                del self._groups[key]

    def subscription(self, selection: Selection) -> Subscription:
        return Subscription(
            selection, self.streams_for(selection.symbols), self._settings.client_queue
        )


class FanoutCollector(Collector):
    """`fxconnector_push_*` metrics, read from the fan-out at scrape time."""

    def __init__(self, fanout: Fanout) -> None:
        self._fanout = fanout

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self._fanout.stats
        yield GaugeMetricFamily(
            "fxconnector_push_clients", "Open SSE and WebSocket clients", value=self._fanout.clients
        )
        yield CounterMetricFamily(
            "fxconnector_push_invalid_events",
            "Events read from Redis that failed validation (never served)",
            value=stats.invalid,
        )
        yield CounterMetricFamily(
            "fxconnector_push_duplicate_finals",
            "Finals read again from Redis (same key and rev) and not passed on again",
            value=stats.duplicates,
        )
        yield CounterMetricFamily(
            "fxconnector_push_slow_clients",
            "Push clients disconnected for falling too far behind",
            value=stats.slow_clients,
        )


def register_metrics(fanout: Fanout, registry: CollectorRegistry) -> None:
    with contextlib.suppress(ValueError):  # already registered (one registry, one fan-out)
        registry.register(FanoutCollector(fanout))
