"""Consumer of the Redis surface: snapshots plus the events stream, merged into a BarBook.

Rules:
- Read-only and layout-bound: HGETALL of `keys.snapshot(...)`, XINFO STREAM and XREAD of
  `keys.events_for(symbol)`, nothing else; the layout is `runtime.publish.keys`, never restated
  here. The single-node layout has one events stream; the cluster layout one per symbol, which
  the consumer reads side by side (one XINFO + XREAD per stream in one pipelined round trip;
  no multi-key command, so it works on Redis Cluster), each with its own cursor. With several
  streams a poll does not block in Redis (a blocking XREAD of several keys would cross slots):
  when nothing came it sleeps up to `MULTI_STREAM_POLL_MS` (at most `block_ms`) instead.
- Bootstrap loads each subscribed series' snapshot and reads each stream from the MIN of the
  cursors of its series: nothing is missed, and events re-read for series whose snapshot is
  newer are harmless because the merge is idempotent. A missing snapshot (nothing published
  yet, or Redis came back empty) keeps that series' bars as they are and reads the stream
  from its start, as does a snapshot whose cursor is beyond the stream (it belongs to an older
  stream).
- Each poll checks, in the XREAD's round trip, that each stream is still the one its cursor
  belongs to; a stream that vanished, whose last id is older than the cursor (recreated), or
  that was trimmed past the unread entries (the consumer fell behind MAXLEN) means bootstrap
  again.
- Redis connection errors become SurfaceUnavailable; `run` retries only those, with capped
  exponential backoff with jitter, and bootstraps again after reconnecting: the server may
  have restarted empty. Bad data is not retried: a malformed event or snapshot is counted,
  sampled in `stats` and skipped; a wrong key type raises ContractViolation; refused
  credentials or ACLs raise ConfigError.
- Users get changes through callbacks, called synchronously in stream order from `poll`:
  `on_change(change)` for every event that changed the book (ignored ones are only counted),
  `on_reload(symbol, tf)` after a series was replaced from its snapshot (bars may have vanished:
  read `book.bars(...)` again). Callbacks must be quick and must not raise; an exception
  propagates out of `poll` and `run`.
- `finals_only` leaves previews out of the book (counted in `stats.previews_skipped`): for a
  consumer of final bars only (the SMC layer), most of the stream is previews.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from redis.asyncio import Redis

from fxconnector.client.backoff import Backoff
from fxconnector.client.merge import BarBook, Change, IgnoreReason, SeriesKey
from fxconnector.client.stream_replies import (
    ZERO,
    StreamId,
    StreamInfo,
    execute,
    reply_field,
    stream_info,
    xread_entries,
)
from fxconnector.core.errors import ConfigError, ContractViolation, SurfaceUnavailable
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils.json_codec import decode
from fxconnector.runtime.publish.keys import (
    SNAPSHOT_BARS_FIELD,
    SNAPSHOT_CURSOR_FIELD,
    STREAM_FIELD,
)
from fxconnector.runtime.publish.keys import SurfaceKeys as SurfaceKeys  # the client's API

log = logging.getLogger("fxconnector.client")

ChangeCallback = Callable[[Change], None]
ReloadCallback = Callable[[str, Timeframe], None]
#: With several streams (cluster layout), the longest sleep of a poll that found nothing.
MULTI_STREAM_POLL_MS: Final = 100


@dataclass(slots=True)
class ConsumerStats:
    """Counters of one consumer (for its user's status and metrics)."""

    events_read: int = 0
    applied: int = 0
    ignored: Counter[IgnoreReason] = field(default_factory=Counter)
    malformed: int = 0
    last_malformed: str = ""
    bootstraps: int = 0
    previews_skipped: int = 0
    resyncs: Counter[str] = field(default_factory=Counter)
    connection_failures: int = 0


class SurfaceConsumer:
    """Keeps a BarBook of the subscribed series in step with the surface (module docstring)."""

    def __init__(
        self,
        redis: Redis,
        keys: SurfaceKeys,
        series: Sequence[tuple[str, Timeframe]],
        book: BarBook | None = None,
        *,
        on_change: ChangeCallback | None = None,
        on_reload: ReloadCallback | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        finals_only: bool = False,
    ) -> None:
        if not series:
            raise ValueError("subscribe to at least one (symbol, tf) series")
        self._redis = redis
        self._keys = keys
        self._series: tuple[SeriesKey, ...] = tuple(
            dict.fromkeys((symbol, Timeframe(tf)) for symbol, tf in series)
        )
        self._wanted = frozenset(self._series)
        self._streams: dict[str, list[SeriesKey]] = {}
        for key in self._series:
            self._streams.setdefault(keys.events_for(key[0]), []).append(key)
        self.book = book if book is not None else BarBook()
        self._on_change = on_change
        self._on_reload = on_reload
        self._finals_only = finals_only
        self._backoff = backoff if backoff is not None else Backoff()
        # Jitter only; not a secret.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311
        self._cursor = dict.fromkeys(self._streams, ZERO)
        # The newest id known to exist in each stream (its last id when the snapshots were
        # read, then every entry read): the stream must never end before it.
        self._verified = dict.fromkeys(self._streams, ZERO)
        self._needs_bootstrap = True
        self.stats = ConsumerStats()

    @property
    def cursor(self) -> StreamId:
        """The id of the newest entry read (XREAD continues after it); with several streams
        (cluster layout) the newest of their cursors (see `cursors`)."""
        return max(self._cursor.values())

    @property
    def cursors(self) -> dict[str, StreamId]:
        """Each events stream's cursor (one stream in the single-node layout)."""
        return dict(self._cursor)

    @property
    def series(self) -> tuple[SeriesKey, ...]:
        return self._series

    async def bootstrap(self) -> None:
        """Load every subscribed series' snapshot; set each stream's cursor to the oldest of
        its series' snapshot cursors."""
        self._needs_bootstrap = True
        streams = list(self._streams)
        async with self._redis.pipeline(transaction=False) as pipe:
            # XINFO before the snapshots bounds what they may miss (for the trim check), XINFO
            # after them bounds their cursors (for the stale-snapshot check).
            for stream in streams:
                pipe.xinfo_stream(stream)
            for symbol, tf in self._series:
                pipe.hgetall(self._keys.snapshot(symbol, tf))
            for stream in streams:
                pipe.xinfo_stream(stream)
            replies = await execute(pipe)
        count = len(streams)
        before = {s: stream_info(s, r) for s, r in zip(streams, replies[:count], strict=True)}
        after = {s: stream_info(s, r) for s, r in zip(streams, replies[-count:], strict=True)}
        cursors: dict[str, list[StreamId]] = {stream: [] for stream in streams}
        reloaded: list[SeriesKey] = []
        for (symbol, tf), reply in zip(self._series, replies[count:-count], strict=True):
            key = self._keys.snapshot(symbol, tf)
            stream = self._keys.events_for(symbol)
            try:
                snapshot = _parse_snapshot(key, reply)
                if snapshot is not None:
                    self.book.load_snapshot(symbol, tf, snapshot[0])
            except ContractViolation as exc:
                self._malformed(f"{key}: {exc}")
                snapshot = None
            if snapshot is None:
                cursors[stream].append(ZERO)
                continue
            reloaded.append((symbol, tf))
            cursor = snapshot[1]
            newest = after[stream]
            if cursor > (newest.last_id if newest is not None else ZERO):
                self.stats.resyncs["snapshot_ahead_of_stream"] += 1
                cursor = ZERO
            cursors[stream].append(cursor)
        for stream in streams:
            self._cursor[stream] = min(cursors[stream])
            info = before[stream]
            self._verified[stream] = info.last_id if info is not None else ZERO
        self._needs_bootstrap = False
        self.stats.bootstraps += 1
        log.info(
            "client.bootstrapped",
            extra={
                "fields": {
                    "cursor": ",".join(str(c) for c in self._cursor.values()),
                    "reloaded": len(reloaded),
                }
            },
        )
        if self._on_reload is not None:
            for symbol, tf in reloaded:
                self._on_reload(symbol, tf)

    async def poll(self, block_ms: int = 0, count: int = 1000) -> int:
        """Read up to `count` entries per stream after its cursor, waiting up to `block_ms`
        (0: no wait).

        Bootstraps first when needed. Returns how many events changed the book.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        self._check_block(block_ms)
        if self._needs_bootstrap:
            await self.bootstrap()
        streams = list(self._streams)
        block = block_ms if block_ms > 0 and len(streams) == 1 else None
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream in streams:
                pipe.xinfo_stream(stream)
                pipe.xread({stream: str(self._cursor[stream])}, count=count, block=block)
            replies = await execute(pipe)
        for i, stream in enumerate(streams):
            reason = self._resync_reason(stream, stream_info(stream, replies[2 * i]))
            if reason is not None:
                self.stats.resyncs[reason] += 1
                log.warning(
                    "client.resync",
                    extra={"fields": {"reason": reason, "cursor": str(self._cursor[stream])}},
                )
                await self.bootstrap()
                return 0
        applied = 0
        read = 0
        for i, stream in enumerate(streams):
            read_reply = replies[2 * i + 1]
            if isinstance(read_reply, Exception):
                raise ContractViolation(f"XREAD {stream}: {read_reply}") from read_reply
            entries = xread_entries(read_reply)
            read += len(entries)
            applied += self._apply_entries(stream, entries)
        if not read and block_ms > 0 and len(streams) > 1:
            await asyncio.sleep(min(block_ms, MULTI_STREAM_POLL_MS) / 1000)
        return applied

    async def run(self, stop: asyncio.Event, *, block_ms: int = 1000, count: int = 1000) -> None:
        """Poll until `stop` is set, riding out Redis outages; returns promptly on `stop`.

        `block_ms` is how long one XREAD waits for entries (at least 1: polling without a
        wait would spin).
        """
        if block_ms < 1:
            raise ValueError(f"run needs block_ms >= 1, got {block_ms}")
        failures = 0
        while not stop.is_set():
            try:
                if not await _unless_stopped(self.poll(block_ms, count), stop):
                    return
            except SurfaceUnavailable as exc:
                failures += 1
                self.stats.connection_failures += 1
                # The server may have restarted empty: reload snapshots once it answers.
                self._needs_bootstrap = True
                if (
                    self._backoff.max_failures is not None
                    and failures >= self._backoff.max_failures
                ):
                    raise
                delay_s = self._backoff.delay_s(failures, self._rng)
                log.warning(
                    "client.surface_unavailable",
                    extra={
                        "fields": {"failures": failures, "retry_in_s": delay_s, "error": str(exc)}
                    },
                )
                await _sleep_unless_stopped(delay_s, stop)
                continue
            failures = 0

    def _apply_entries(self, stream: str, entries: list[tuple[Any, Any]]) -> int:
        applied = 0
        for raw_id, fields in entries:
            entry_id = StreamId.parse(raw_id)
            # Advance first: a malformed entry is skipped for good, not re-read forever.
            self._cursor[stream] = self._verified[stream] = entry_id
            self.stats.events_read += 1
            event = self._decode_entry(entry_id, fields)
            if event is None or (event.symbol, event.tf) not in self._wanted:
                continue
            if self._finals_only and not event.complete:
                self.stats.previews_skipped += 1
                continue
            change = self.book.apply(event)
            if change.reason is not None:
                self.stats.ignored[change.reason] += 1
                continue
            applied += 1
            if self._on_change is not None:
                self._on_change(change)
        self.stats.applied += applied
        return applied

    def _decode_entry(self, entry_id: StreamId, fields: Any) -> OhlcvEvent | None:
        raw = reply_field(fields, STREAM_FIELD) if isinstance(fields, dict) else None
        if raw is None:
            self._malformed(f"entry {entry_id}: no `{STREAM_FIELD}` field")
            return None
        try:
            return decode(raw, OhlcvEvent)
        except msgspec.DecodeError as exc:
            self._malformed(f"entry {entry_id}: {exc}")
            return None

    def _malformed(self, sample: str) -> None:
        self.stats.malformed += 1
        self.stats.last_malformed = sample
        # Log the 1st, 2nd, 4th, 8th... occurrence: loud at first, bounded under a broken peer.
        if self.stats.malformed & (self.stats.malformed - 1) == 0:
            log.warning(
                "client.malformed",
                extra={"fields": {"count": self.stats.malformed, "sample": sample}},
            )

    def _resync_reason(self, stream: str, info: StreamInfo | None) -> str | None:
        """Why `stream` no longer continues from its cursor, or None when it does."""
        position = max(self._cursor[stream], self._verified[stream])
        if info is None:
            return "stream_vanished" if self._verified[stream] > ZERO else None
        if position > info.last_id:
            return "stream_recreated"
        if position == ZERO:
            # Nothing read yet from a stream that did not exist at bootstrap: only Redis >= 7
            # says whether entries were trimmed before the first read.
            trimmed = info.entries_added is not None and info.entries_added > info.length
        elif info.first_id is None:
            trimmed = info.last_id > position
        else:
            trimmed = info.first_id > position
        return "stream_trimmed" if trimmed else None

    def _check_block(self, block_ms: int) -> None:
        pool = getattr(self._redis, "connection_pool", None)
        if pool is not None:
            kwargs: Mapping[str, Any] = pool.connection_kwargs
        else:  # a RedisCluster client (the cluster layout): its nodes share these
            kwargs = self._redis.nodes_manager.connection_kwargs  # type: ignore[attr-defined]
        timeout_s = kwargs.get("socket_timeout")
        if block_ms > 0 and timeout_s is not None and block_ms > timeout_s * 1000 * 0.8:
            # Else every idle XREAD would time out on the client and reconnect, in a loop.
            raise ConfigError(
                f"block_ms={block_ms} must leave a fifth of the Redis client's socket_timeout "
                f"({timeout_s} s) for the round trip"
            )


def _parse_snapshot(key: str, reply: Any) -> tuple[list[OhlcvEvent], StreamId] | None:
    """The bars and cursor of one snapshot hash; None when there is none."""
    if isinstance(reply, Exception):
        raise ContractViolation(f"HGETALL failed: {reply}")
    if not reply:
        return None
    bars_raw = reply_field(reply, SNAPSHOT_BARS_FIELD)
    cursor_raw = reply_field(reply, SNAPSHOT_CURSOR_FIELD)
    if bars_raw is None or cursor_raw is None:
        raise ContractViolation(f"snapshot {key} lacks `{SNAPSHOT_BARS_FIELD}` or `cursor`")
    try:
        bars = decode(bars_raw, list[OhlcvEvent])
    except msgspec.DecodeError as exc:
        raise ContractViolation(f"snapshot bars: {exc}") from exc
    return bars, StreamId.parse(cursor_raw)


async def _unless_stopped(work: Awaitable[Any], stop: asyncio.Event) -> bool:
    """Await `work` unless `stop` is set first (then cancel it); True when `work` finished."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()  # no-op once done
        stopper.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)
    if task.cancelled():
        return False
    task.result()  # re-raises the work's error
    return True


async def _sleep_unless_stopped(delay_s: float, stop: asyncio.Event) -> None:
    try:
        async with asyncio.timeout(delay_s):
            await stop.wait()
    except TimeoutError:
        pass
