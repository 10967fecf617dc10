"""The `/api/bars` windows: final bars from the snapshot or the SSOT, encoded once per snapshot.

Rules:
- A tail window (no from/to) is the snapshot's last `limit` finals, preceded by older finals
  from the SSOT (`history`) when the snapshot holds fewer. Its `cursor` is the events stream's
  newest id, read atomically with the snapshot (`SurfaceReader.snapshot`): the snapshot holds
  every final of the series up to it, so reading the stream after it continues the window with
  no gap, and it is never older than what the trimmed stream keeps (a series whose snapshot
  was written long ago, a higher timeframe's, would otherwise hand out a cursor the stream no
  longer holds, and its clients would reload in a loop).
- Snapshot bars go out as the bytes the writer stored (canonical JSON); only SSOT bars, the
  preview and the cursor are encoded here, with the one canonical codec. The envelope's field
  order is `symbol, tf, bars, preview, cursor`.
- A tail window's encoded bars are cached per (symbol, tf, limit) with the snapshot cursor
  they reflect (finals, hence that cursor, change about once a minute). A hit is served without
  Redis for `recheck_s`; after that one request per series reads the snapshot cursor and the
  stream's newest id (one script) while concurrent requests still answer from the pair seen
  last (for at most `max(1 s, 10 * recheck_s)`). The cursor served is the newest id read with
  the snapshot cursor the bars reflect: a pair read together, so a body is always consistent,
  whatever its age. A failed check forgets the pair, so the next request asks Redis itself
  (and gets a 503 while Redis is down). Without a snapshot (cursor None) nothing is cached.
  The cache is an LRU bounded in bytes.
- Range windows (from/to) come from the SSOT alone and carry no cursor (they are not tied to a
  stream position), so they are served while Redis is down. At most `limit` bars are read,
  whatever the range (`from_ms=0` reads from the first stored day, not the whole history), and
  `history` reads the store off the event loop.
- A snapshot read back from Redis is validated (`event_check`) before it is served: a
  malformed one is counted and sampled, and the window comes from the SSOT alone with no
  cursor (as when there is no snapshot), never a 500. A snapshot found bad is not checked
  again while its cursor stays the same.
- The preview is never cached: it is added on request, only when it opens after the last final
  of the window (and inside the range, for a range window). A cached window keeps its body cut
  before the preview (`..."preview":`), so adding one, or another cursor, re-encodes nothing
  but them: the bytes are those the codec gives for the whole body. The body without a
  preview is kept for the last cursor served.
- gzip (when the caller asks for it): a cached window keeps the compressor state after the
  bars, so per request only the preview and the cursor are compressed (the gzip body without
  a preview is kept for the last cursor served). Range windows are compressed per request.
  gzip output is a valid gzip member (RFC 1952) whatever the path.
"""

from __future__ import annotations

import time
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import msgspec

from fxconnector.core.errors import ContractViolation
from fxconnector.core.model.bar import OhlcvEvent, StoredFinal
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish.event_check import EventCheck
from fxconnector.runtime.publish.surface_reader import SurfaceReader

History = Callable[[str, Timeframe, int | None, int | None, int], Awaitable[list[OhlcvEvent]]]
Preview = Callable[[str, Timeframe], OhlcvEvent | None]


class BarsBody(msgspec.Struct):
    """The `/api/bars` response; field order is the wire order."""

    symbol: str
    tf: str
    bars: msgspec.Raw
    preview: OhlcvEvent | None
    cursor: str | None


class _OpenMs(msgspec.Struct):
    open_ms: int


_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_OPEN_MS = msgspec.json.Decoder(_OpenMs)


_GZIP_LEVEL: Final = 6
_GZIP_WBITS: Final = 31  # zlib's gzip container (header + CRC-32 trailer)
_PREVIEW_CUT: Final = b',"preview":null,"cursor":null}'
#: What a kept zlib compressor holds (window, hash chains, buffer), for the cache's bound.
_COMPRESSOR_BYTES: Final = 300_000


def gzip_body(body: bytes) -> bytes:
    """`body` as one gzip member."""
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    return compressor.compress(body) + compressor.flush()


def _cursor_tail(cursor: str | None) -> bytes:
    return b',"cursor":' + encode(cursor) + b"}"


@dataclass(slots=True)
class _Window:
    """One encoded window, cut before its preview; the rest is made per request (module rules)."""

    cursor: str | None  # the snapshot cursor the bars reflect (the cache's identity)
    last_open_ms: int | None
    head: bytes  # the encoded response up to `"preview":` included
    served: str | None = None  # the cursor `body` and `gz` carry
    body: bytes | None = None  # the response without a preview, for `served`
    gz: bytes | None = None  # ...and gzipped
    gz_head: bytes | None = None  # `head` compressed and sync-flushed...
    gz_state: zlib._Compress | None = None  # ...and the zlib compressor right after it

    @classmethod
    def of(cls, cursor: str | None, last_open_ms: int | None, encoded: bytes) -> _Window:
        """`encoded`: the codec's whole body with no preview and no cursor."""
        cut = encoded.rindex(_PREVIEW_CUT)
        return cls(cursor, last_open_ms, encoded[: cut + len(b',"preview":')])

    @property
    def size(self) -> int:
        kept = _COMPRESSOR_BYTES if self.gz_state is not None else 0
        return (
            len(self.head)
            + len(self.body or b"")
            + len(self.gz or b"")
            + len(self.gz_head or b"")
            + kept
        )

    def _keep_for(self, served: str | None) -> None:
        if self.served != served:
            self.served, self.body, self.gz = served, None, None

    def plain(self, preview: OhlcvEvent | None, served: str | None) -> bytes:
        if preview is not None:
            return self.head + encode(preview) + _cursor_tail(served)
        self._keep_for(served)
        if self.body is None:
            self.body = self.head + b"null" + _cursor_tail(served)
        return self.body

    def gzipped(self, preview: OhlcvEvent | None, served: str | None) -> bytes:
        if preview is None:
            self._keep_for(served)
            if self.gz is None:
                self.gz = self._gzip_rest(b"null", served)
            return self.gz
        return self._gzip_rest(encode(preview), served)

    def _gzip_rest(self, preview: bytes, served: str | None) -> bytes:
        if self.gz_head is None or self.gz_state is None:
            state = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
            self.gz_head = state.compress(self.head) + state.flush(zlib.Z_SYNC_FLUSH)
            self.gz_state = state
        compressor = self.gz_state.copy()
        return (
            self.gz_head + compressor.compress(preview + _cursor_tail(served)) + compressor.flush()
        )


def _public(bar: OhlcvEvent) -> OhlcvEvent:
    # A stored final carries the storage-only `reason`; the public payload never does.
    return bar.event() if isinstance(bar, StoredFinal) else bar


class BarsService:
    """Builds (and caches) `/api/bars` bodies."""

    def __init__(
        self,
        reader: SurfaceReader,
        history: History,
        preview: Preview,
        *,
        recheck_s: float = 0.1,
        max_cache_bytes: int = 64 << 20,
        clock: Callable[[], float] = time.monotonic,
        check: EventCheck | None = None,
    ) -> None:
        self._check = check
        self._bad: dict[tuple[str, Timeframe], str | None] = {}
        self._reader = reader
        self._history = history
        self._preview = preview
        self._recheck_s = recheck_s
        self._max_stale_s = max(1.0, 10 * recheck_s)
        self._max_cache_bytes = max_cache_bytes
        self._clock = clock
        self._cache: OrderedDict[tuple[str, Timeframe, int], _Window] = OrderedDict()
        self._cache_bytes = 0
        # Per series: the snapshot cursor, the fresh cursor read with it, and when.
        self._seen: dict[tuple[str, Timeframe], tuple[str | None, str | None, float]] = {}
        self._checking: set[tuple[str, Timeframe]] = set()

    async def tail(
        self, symbol: str, tf: Timeframe, limit: int, *, with_preview: bool, gzip: bool = False
    ) -> bytes:
        """The newest `limit` finals (snapshot first, then the SSOT) and the stream cursor
        read with the snapshot; gzipped when `gzip`."""
        key = (symbol, tf, limit)
        window = self._cache.get(key)
        served = None if window is None else await self._current(symbol, tf, window.cursor)
        if window is not None and served is not None:
            self._cache.move_to_end(key)
        else:
            window, served = await self._load(symbol, tf, limit)
        preview = (
            self._preview_after(symbol, tf, window.last_open_ms, None, None)
            if with_preview
            else None
        )
        size_before = window.size
        body = window.gzipped(preview, served) if gzip else window.plain(preview, served)
        if window.size != size_before and self._cache.get(key) is window:
            self._cache_bytes += window.size - size_before
            self._evict()
        return body

    async def range(
        self,
        symbol: str,
        tf: Timeframe,
        from_ms: int | None,
        to_ms: int | None,
        limit: int,
        *,
        with_preview: bool,
        gzip: bool = False,
    ) -> bytes:
        """The newest `limit` finals with `from_ms <= open_ms < to_ms`, from the SSOT alone;
        gzipped when `gzip`."""
        bars = [
            _public(bar)
            for bar in await self._history(symbol, tf, from_ms, to_ms, limit)
            if (from_ms is None or bar.open_ms >= from_ms)
            and (to_ms is None or bar.open_ms < to_ms)
        ][-limit:]
        last_open_ms = bars[-1].open_ms if bars else None
        preview = (
            self._preview_after(symbol, tf, last_open_ms, from_ms, to_ms) if with_preview else None
        )
        body = encode(BarsBody(symbol, tf.value, msgspec.Raw(encode(bars)), preview, None))
        return gzip_body(body) if gzip else body

    def _preview_after(
        self,
        symbol: str,
        tf: Timeframe,
        last_open_ms: int | None,
        from_ms: int | None,
        to_ms: int | None,
    ) -> OhlcvEvent | None:
        preview = self._preview(symbol, tf)
        if preview is None:
            return None
        if last_open_ms is not None and preview.open_ms <= last_open_ms:
            return None  # NoMix: a final already covers (or follows) this bucket
        if (from_ms is not None and preview.open_ms < from_ms) or (
            to_ms is not None and preview.open_ms >= to_ms
        ):
            return None
        return preview

    async def _current(self, symbol: str, tf: Timeframe, cursor: str | None) -> str | None:
        """The cursor to serve a window of snapshot `cursor` with, or None when that
        snapshot is no longer the series' current one."""
        series = (symbol, tf)
        seen = self._seen.get(series)
        if seen is not None:
            age_s = self._clock() - seen[2]
            if age_s < self._recheck_s or (series in self._checking and age_s < self._max_stale_s):
                return seen[1] if seen[0] == cursor else None
        # This request checks; the others meanwhile answer from what was seen last, so a slow
        # read (the loop is busy flushing big bodies) delays one request, not all of them.
        self._checking.add(series)
        try:
            checked_at = self._clock()
            current, fresh = await self._reader.snapshot_cursor(symbol, tf)
        except BaseException:
            self._seen.pop(series, None)  # unknown now: the next request asks Redis itself
            raise
        finally:
            self._checking.discard(series)
        self._seen[series] = (current, fresh, checked_at)
        return fresh if current == cursor else None

    async def _load(self, symbol: str, tf: Timeframe, limit: int) -> tuple[_Window, str | None]:
        """The window read now, and the cursor to serve it with."""
        checked_at = self._clock()
        bars_json, cursor, fresh = await self._reader.snapshot(symbol, tf)
        self._seen[(symbol, tf)] = (cursor, fresh, checked_at)
        if bars_json != b"[]" and self._check is not None:
            bad = self._bad.get((symbol, tf), "") == cursor or self._check.snapshot(
                bars_json, symbol, tf, self._reader.keys.snapshot(symbol, tf)
            )
            if bad:
                self._bad[(symbol, tf)] = cursor
                return await self._build(symbol, tf, limit, b"[]", None), None  # the SSOT alone
        window = await self._build(symbol, tf, limit, bars_json, cursor)
        if cursor is not None:
            self._remember((symbol, tf, limit), window)
        return window, fresh

    async def _build(
        self, symbol: str, tf: Timeframe, limit: int, bars_json: bytes, cursor: str | None
    ) -> _Window:
        try:
            snapshot = _RAW_LIST.decode(bars_json)
            items = snapshot[-limit:]
            first_open_ms = _OPEN_MS.decode(items[0]).open_ms if items else None
            last_open_ms = _OPEN_MS.decode(items[-1]).open_ms if items else None
        except msgspec.DecodeError as exc:
            raise ContractViolation(f"snapshot of {symbol} {tf.value} is malformed: {exc}") from exc
        reassemble = len(items) < len(snapshot)
        missing = limit - len(items)
        if missing > 0:
            older = [
                _public(bar)
                for bar in await self._history(symbol, tf, None, first_open_ms, missing)
                if first_open_ms is None or bar.open_ms < first_open_ms
            ][-missing:]
            if older:
                items = [msgspec.Raw(encode(bar)) for bar in older] + items
                if last_open_ms is None:
                    last_open_ms = older[-1].open_ms
                reassemble = True
        bars = b"[" + b",".join(items) + b"]" if reassemble else bars_json
        body = encode(BarsBody(symbol, tf.value, msgspec.Raw(bars), None, None))
        return _Window.of(cursor, last_open_ms, body)

    def _remember(self, key: tuple[str, Timeframe, int], window: _Window) -> None:
        old = self._cache.pop(key, None)
        if old is not None:
            self._cache_bytes -= old.size
        self._cache[key] = window
        self._cache_bytes += window.size
        self._evict()

    def _evict(self) -> None:
        while self._cache_bytes > self._max_cache_bytes and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cache_bytes -= dropped.size
