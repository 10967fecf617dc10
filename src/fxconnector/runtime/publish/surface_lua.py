"""The scripts of the Redis surface and the bytes they are called with (DESIGN §7, keys.py).

Rules:
- One finals script call per (symbol, tf) batch does, atomically: XADD every event of the batch
  to the symbol's events stream (field `event`), then HSET the series' snapshot hash: `bars`
  (given, already encoded) and `cursor` (the id of the batch's last XADD). A consumer therefore
  never sees a snapshot whose cursor disagrees with the stream. Its two keys are one symbol's, so
  in the cluster layout (`{SYMBOL}` hash tags) the call is single-slot.
- One previews script call per stream XADDs a batch of previews.
- Trimming is by time: after its XADDs each call trims its stream with `XTRIM MINID ~ T`, T =
  the caller's `now - retention` (its injected clock), but never past the entry it just added
  (a clock far ahead of Redis's cannot empty the stream or orphan a snapshot's cursor).
- Everything is encoded here in Python with the canonical codec; the script never builds JSON.
- Snapshot bars are public `ohlcv_event_v1` objects: a stored revision's `reason` is dropped.
- The encoder keeps the encoded bytes of the bars of each series' last snapshot, so a batch
  re-encodes only the bars that changed, not the whole window.

This module must not know queues, retries or connections.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from fxconnector.core.model.bar import OhlcvEvent, StoredFinal
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish.keys import (
    SNAPSHOT_BARS_FIELD,
    SNAPSHOT_CURSOR_FIELD,
    STREAM_FIELD,
)

Series = tuple[str, Timeframe]

#: Trim KEYS[1] to MINID ~ min(ARGV[1], the ms of `id`, the entry just added).
_TRIM: Final = """
local newest = tonumber(string.match(id, '^(%d+)'))
local minid = math.min(tonumber(ARGV[1]), newest)
redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%.0f', minid))
"""

#: KEYS[1] events stream, KEYS[2] snapshot hash; ARGV[1] MINID (ms), ARGV[2] the snapshot's
#: `bars` JSON, ARGV[3..] the events in publishing order. Returns the last id.
FINALS_LUA: Final = f"""
local id = false
for i = 3, #ARGV do
  id = redis.call('XADD', KEYS[1], '*', '{STREAM_FIELD}', ARGV[i])
end
if id then
  redis.call('HSET', KEYS[2], '{SNAPSHOT_BARS_FIELD}', ARGV[2], '{SNAPSHOT_CURSOR_FIELD}', id)
{_TRIM}
end
return id
"""

#: KEYS[1] events stream; ARGV[1] MINID (ms), ARGV[2..] the previews. Returns the last id.
PREVIEWS_LUA: Final = f"""
local id = false
for i = 2, #ARGV do
  id = redis.call('XADD', KEYS[1], '*', '{STREAM_FIELD}', ARGV[i])
end
if id then
{_TRIM}
end
return id
"""


def encode_event(bar: OhlcvEvent) -> bytes:
    """Canonical `ohlcv_event_v1` bytes of a bar (a stored revision loses its `reason`)."""
    if isinstance(bar, StoredFinal) and bar.reason:
        return encode(bar.event())
    # A StoredFinal without a reason encodes byte-identical to its event (omit_defaults).
    return encode(bar)


class SnapshotEncoder:
    """Encodes snapshots and batch events, reusing the bytes of unchanged bars."""

    def __init__(self) -> None:
        # Per series: open_ms -> (rev, bytes) of the bars in its last snapshot.
        self._cache: dict[Series, dict[int, tuple[int, bytes]]] = {}

    def snapshot(self, series: Series, bars: Sequence[OhlcvEvent]) -> bytes:
        """The `bars` JSON array of `bars` (ascending open_ms), remembered for later batches."""
        old = self._cache.get(series, {})
        new: dict[int, tuple[int, bytes]] = {}
        parts: list[bytes] = []
        for bar in bars:
            hit = old.get(bar.open_ms)
            data = hit[1] if hit is not None and hit[0] == bar.rev else encode_event(bar)
            new[bar.open_ms] = (bar.rev, data)
            parts.append(data)
        self._cache[series] = new
        return b"[" + b",".join(parts) + b"]"

    def event(self, series: Series, event: OhlcvEvent) -> bytes:
        """The bytes of one event, from the last snapshot when it holds the same revision."""
        hit = self._cache.get(series, {}).get(event.open_ms)
        if hit is not None and hit[0] == event.rev:
            return hit[1]
        return encode_event(event)
