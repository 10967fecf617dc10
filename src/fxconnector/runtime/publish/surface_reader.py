"""Read side of the public Redis surface (DESIGN §7): snapshots, the events stream, status, ticks.

Rules:
- Read-only: this module never writes a key. The layout (names, fields, entry format) is the one
  `keys.py` defines; the values are passed on as the raw bytes the writer stored (they are
  already canonical JSON), never decoded and re-encoded here.
- Every Redis or socket failure is translated at this boundary into SurfaceUnavailable, so
  callers see one retryable error and no redis-py types.
- No retries and no sleeps here: the HTTP API fails fast (503) and the push loops own their
  backoff. The client should have bounded timeouts and no retry loop of its own (as
  `redis_connect.connect_redis` makes it); a blocking read needs a socket timeout longer than
  its `block_ms`.
- Stream ids are compared as `(ms, seq)` integer pairs, never as strings.
- A snapshot served with a stream cursor (`/api/bars`, `/api/smc`) is read together with its
  stream's newest id in one script (`SNAPSHOT_AT_HEAD_LUA`; its two keys are one symbol's, so
  one slot in the cluster layout), and that id is the cursor handed out: every entry of the
  series up to it is already in the snapshot (the writer updates the snapshot in the same
  script as each entry of the series it reflects), so reading the stream after it misses
  nothing, and the cursor is as young as the stream (a snapshot written long ago, a higher
  timeframe's, no longer hands out an id the stream has trimmed away).
- Several streams (the cluster layout's per-symbol streams) are read with one non-blocking
  XREAD per stream, pipelined: redis-py's RedisCluster refuses a multi-key XREAD across slots,
  and per-stream commands in one pipeline are one round trip per node.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

from redis.exceptions import RedisError

from fxconnector.core.errors import ContractViolation, SurfaceUnavailable
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.publish.keys import (
    SMC_HINTS_FIELD,
    SNAPSHOT_BARS_FIELD,
    SNAPSHOT_CURSOR_FIELD,
    STREAM_FIELD,
    SurfaceKeys,
)
from fxconnector.runtime.publish.redis_connect import SurfaceClient

T = TypeVar("T")

#: The id before every stream entry: reading from it returns the whole stream.
STREAM_START: Final = "0-0"

_STREAM_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
_U64_MAX: Final = 2**64 - 1
_EVENT_FIELD: Final = STREAM_FIELD.encode()

#: KEYS[1] a snapshot hash, KEYS[2] the stream its cursor is an id of; ARGV the hash fields.
#: Returns the fields' values (nil when absent), then the stream's newest id (nil when the
#: stream is empty or absent), read atomically.
SNAPSHOT_AT_HEAD_LUA: Final = """
local out = redis.call('HMGET', KEYS[1], unpack(ARGV))
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
out[#ARGV + 1] = newest[1] and newest[1][1] or false
return out
"""


def parse_stream_id(text: str) -> tuple[int, int]:
    """`(ms, seq)` of a stream id (`1700000000000-3`, or `1700000000000` for seq 0).

    Raises ContractViolation when `text` is not a stream id Redis would accept.
    """
    match = _STREAM_ID.match(text)
    if match is None:
        raise ContractViolation(f"not a stream id: {text[:60]!r} (expected <ms>-<seq>)")
    ms, seq = int(match.group(1)), int(match.group(2) or 0)
    if ms > _U64_MAX or seq > _U64_MAX:
        raise ContractViolation(f"stream id out of range: {text[:60]!r}")
    return ms, seq


def normalize_stream_id(text: str) -> str:
    """The canonical `<ms>-<seq>` spelling of a stream id (ContractViolation if invalid)."""
    ms, seq = parse_stream_id(text)
    return f"{ms}-{seq}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _entries(reply: Any) -> list[tuple[str, bytes]]:
    """`(id, event JSON)` of a one-stream XREAD reply; entries without `event` are skipped."""
    if not reply:
        return []
    # RESP2 gives [[key, entries]]; RESP3 gives {key: [entries]}.
    entries = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
    out: list[tuple[str, bytes]] = []
    for entry_id, fields in entries:
        event = fields.get(_EVENT_FIELD)
        if event is None:
            event = fields.get(STREAM_FIELD)
        if event is not None:
            out.append((_text(entry_id), _as_bytes(event)))
    return out


def fresh_cursor(snapshot_cursor: bytes | str | None, head: bytes | str | None) -> str | None:
    """The cursor to hand out with a snapshot: the stream's newest id read with it (never
    older than the snapshot's own cursor); None without a snapshot cursor."""
    if snapshot_cursor is None:
        return None
    own = _text(snapshot_cursor)
    if head is None:
        return own  # the stream is empty or gone: nothing follows the snapshot's own cursor
    newest = _text(head)
    return newest if parse_stream_id(newest) > parse_stream_id(own) else own


class SurfaceReader:
    """Reads the surface written by the surface writer; every method is one Redis round trip."""

    def __init__(self, redis_client: SurfaceClient, keys: SurfaceKeys) -> None:
        self._redis = redis_client
        self._keys = keys

    @property
    def keys(self) -> SurfaceKeys:
        return self._keys

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except (RedisError, OSError) as exc:
            raise SurfaceUnavailable(f"redis {what} failed: {type(exc).__name__}: {exc}") from exc

    async def _at_head(self, snapshot: str, stream: str, fields: list[str]) -> list[Any]:
        """The hash `snapshot`'s `fields`, then `stream`'s newest id, read atomically."""
        reply: Any = await self._call(
            "EVAL snapshot at head",
            lambda: self._redis.eval(SNAPSHOT_AT_HEAD_LUA, 2, snapshot, stream, *fields),
        )
        values = list(reply)
        if len(values) != len(fields) + 1:
            raise ContractViolation(f"snapshot at head: unexpected reply {values!r:.200}")
        return values

    async def snapshot(self, symbol: str, tf: Timeframe) -> tuple[bytes, str | None, str | None]:
        """The snapshot's raw `bars` JSON array, its own cursor and the cursor to hand out with
        it (`fresh_cursor`, read atomically with it); `(b"[]", None, None)` when absent."""
        bars, cursor, head = await self._at_head(
            self._keys.snapshot(symbol, tf),
            self._keys.events_for(symbol),
            [SNAPSHOT_BARS_FIELD, SNAPSHOT_CURSOR_FIELD],
        )
        if bars is None or cursor is None:
            return b"[]", None, None
        return _as_bytes(bars), _text(cursor), fresh_cursor(cursor, head)

    async def snapshot_cursor(self, symbol: str, tf: Timeframe) -> tuple[str | None, str | None]:
        """Only the snapshot's own cursor and the fresh one (cheap: used to check whether a
        cached window is current); `(None, None)` when absent."""
        cursor, head = await self._at_head(
            self._keys.snapshot(symbol, tf), self._keys.events_for(symbol), [SNAPSHOT_CURSOR_FIELD]
        )
        if cursor is None:
            return None, None
        return _text(cursor), fresh_cursor(cursor, head)

    async def smc_snapshot(self, symbol: str, tf: Timeframe) -> tuple[bytes, str | None]:
        """The SMC snapshot's raw `hints` JSON array and the SMC stream cursor to hand out
        with it (`fresh_cursor`); `(b"[]", <the stream's newest id or None>)` when absent (no
        SMC consumer has written the series: none of its hints is in the stream either)."""
        hints, cursor, head = await self._at_head(
            self._keys.smc_snapshot(symbol, tf),
            self._keys.smc_events_for(symbol),
            [SMC_HINTS_FIELD, SNAPSHOT_CURSOR_FIELD],
        )
        if hints is None:
            return b"[]", None if head is None else _text(head)
        return _as_bytes(hints), fresh_cursor(cursor, head)

    async def read_events(
        self, cursor: str, *, block_ms: int, count: int, stream: str | None = None
    ) -> list[tuple[str, bytes]]:
        """Up to `count` entries after `cursor` (exclusive), as `(id, event JSON)`, oldest first.

        Waits up to `block_ms` for the first entry when there is none (`block_ms=0` does not
        wait: Redis would read BLOCK 0 as "forever"). Entries without the `event` field are
        skipped (the writer never makes them). `stream` defaults to the single layout's bar
        events stream (the SMC consumer's is `keys.smc_events`).
        """
        if count < 1:
            raise ContractViolation(f"count must be >= 1, got {count}")
        start = normalize_stream_id(cursor)
        block = block_ms if block_ms > 0 else None
        reply: Any = await self._call(
            "XREAD",
            lambda: self._redis.xread(
                {stream or self._keys.events: start}, count=count, block=block
            ),
        )
        return _entries(reply)

    async def read_streams(
        self, positions: Mapping[str, str], *, count: int
    ) -> dict[str, list[tuple[str, bytes]]]:
        """Up to `count` entries after each stream's position (exclusive), without waiting.

        `positions` maps stream key -> id; the answer maps every stream that had entries to
        its `(id, event JSON)` list, oldest first. One pipelined round trip (per node).
        """
        if count < 1:
            raise ContractViolation(f"count must be >= 1, got {count}")
        names = list(positions)
        starts = [normalize_stream_id(positions[name]) for name in names]

        async def run() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name, start in zip(names, starts, strict=True):
                    pipe.xread({name: start}, count=count)
                return list(await pipe.execute())

        replies = await self._call("XREAD (pipelined)", run)
        out: dict[str, list[tuple[str, bytes]]] = {}
        for name, reply in zip(names, replies, strict=True):
            entries = _entries(reply)
            if entries:
                out[name] = entries
        return out

    async def last_id(self, stream: str | None = None) -> str:
        """The id of the newest entry of `stream` (default: the single layout's events
        stream), or "0-0" when the stream is empty or absent."""
        name = self._keys.events if stream is None else stream
        newest: Any = await self._call("XREVRANGE", lambda: self._redis.xrevrange(name, count=1))
        return _text(newest[0][0]) if newest else STREAM_START

    async def first_id(self, stream: str | None = None) -> str | None:
        """The id of the oldest entry still in the (trimmed) stream, or None when it is empty."""
        name = self._keys.events if stream is None else stream
        oldest: Any = await self._call("XRANGE", lambda: self._redis.xrange(name, count=1))
        return _text(oldest[0][0]) if oldest else None

    async def status(self) -> bytes | None:
        """The live `status_v2` JSON, or None when absent (expired: the connector is gone)."""
        value = await self._call("GET status", lambda: self._redis.get(self._keys.status))
        return None if value is None else _as_bytes(value)

    async def symbols(self) -> list[str]:
        """Every symbol some process of the namespace publishes (`NS:symbols`), sorted."""
        members: Any = await self._call(
            "SMEMBERS symbols", lambda: self._redis.smembers(self._keys.symbols)
        )
        return sorted(_text(member) for member in members)

    async def status_symbol(self, symbol: str) -> bytes | None:
        """A symbol's `status_symbol_v1` JSON, or None when absent (expired or never written)."""
        key = self._keys.status_symbol(symbol)
        value = await self._call("GET status symbol", lambda: self._redis.get(key))
        return None if value is None else _as_bytes(value)

    async def status_processes(self) -> dict[str, bytes]:
        """Process id -> `status_v2` JSON of every live process of the namespace (those listed
        in `NS:status:procs` whose own status key has not expired), sorted by id."""
        members: Any = await self._call(
            "ZRANGE status procs", lambda: self._redis.zrange(self._keys.status_processes, 0, -1)
        )
        ids = sorted(_text(member) for member in members)

        async def get_all() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            for process in ids:
                pipe.get(self._keys.status_process(process))
            return await pipe.execute()

        values: Any = await self._call("GET status procs", get_all) if ids else []
        return {p: _as_bytes(v) for p, v in zip(ids, values, strict=True) if v is not None}

    async def status_snapshot(self) -> bytes | None:
        """The `{"last_command": ..., "errors": [...]}` JSON, or None when absent."""
        value = await self._call(
            "GET status snapshot", lambda: self._redis.get(self._keys.status_snapshot)
        )
        return None if value is None else _as_bytes(value)

    async def ticks(self, symbols: list[str] | None = None) -> dict[str, bytes]:
        """symbol -> the last tick's canonical `tick_v1` JSON (symbols without one are left out).

        Single-node layout: the `price_tik` hash (all of it, or HMGET of `symbols`). Cluster
        layout: one GET per symbol's tick key, pipelined (`symbols` is required there: the
        keys live in different slots).
        """
        if not self._keys.cluster:
            if symbols is None:
                raw: Any = await self._call(
                    "HGETALL price_tik", lambda: self._redis.hgetall(self._keys.price_tik)
                )
                return {_text(symbol): _as_bytes(tick) for symbol, tick in raw.items()}
            if not symbols:
                return {}
            values: Any = await self._call(
                "HMGET price_tik", lambda: self._redis.hmget(self._keys.price_tik, symbols)
            )
        else:
            if symbols is None:
                raise ContractViolation("ticks() needs the symbols in the cluster layout")
            if not symbols:
                return {}

            async def get_all() -> Any:
                pipe = self._redis.pipeline(transaction=False)
                for symbol in symbols:
                    pipe.get(self._keys.tick(symbol))
                return await pipe.execute()

            values = await self._call("GET ticks", get_all)
        return {s: _as_bytes(v) for s, v in zip(symbols, values, strict=True) if v is not None}

    async def value(self, key: str) -> bytes | None:
        """The raw value of the string `key`, or None when absent (`keys.exec_process`)."""
        value = await self._call(f"GET {key}", lambda: self._redis.get(key))
        return None if value is None else _as_bytes(value)

    async def hash_values(self, key: str) -> dict[str, bytes]:
        """field -> raw value of the hash `key` (the execution keys: `keys.exec_*`)."""
        raw: Any = await self._call(f"HGETALL {key}", lambda: self._redis.hgetall(key))
        return {_text(name): _as_bytes(value) for name, value in raw.items()}

    async def stream_entries(
        self, stream: str, *, after: str | None, count: int
    ) -> list[tuple[str, bytes]]:
        """Entries of `stream` as `(id, event JSON)`, oldest first: the `count` newest ones
        (`after` None), or up to `count` after the id `after` (exclusive)."""
        if count < 1:
            raise ContractViolation(f"count must be >= 1, got {count}")
        if after is None:
            newest: Any = await self._call(
                "XREVRANGE", lambda: self._redis.xrevrange(stream, count=count)
            )
            return _entries([[stream, list(reversed(newest))]])
        start = f"({normalize_stream_id(after)}"
        reply: Any = await self._call(
            "XRANGE", lambda: self._redis.xrange(stream, min=start, count=count)
        )
        return _entries([[stream, reply]])
