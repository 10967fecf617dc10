"""The SMC consumer's one write: hints to the SMC stream and the series' snapshot, atomically.

Rules:
- One script call per series batch does, atomically: XADD each hint (field `event`, canonical
  `smc_hint_v1` JSON) to the symbol's SMC stream, then HSET the series' SMC snapshot: `hints`
  (the window, already encoded), `state` (where the consumer stands) and `cursor` (the stream's
  newest id after the XADDs). Its two keys are one symbol's (`{SYMBOL}` hash tags in the
  cluster layout): a single-slot call. A reader of the snapshot that XREADs from `cursor`
  sees every later hint of the series exactly once; a consumer restarted from `state` goes on
  exactly after the last hint written.
- Exactly once: each write carries the series' next write number (`state.seq`); the script
  applies a write only when the snapshot's state has a lower one, so a retry after a reply
  lost on the wire (applied or not, the writer cannot tell) never XADDs a hint twice.
- The stream is trimmed by time, like the bar events (`XTRIM MINID ~ now - retention`, never
  past the entry just added).
- Encoded here in Python; the script never builds JSON.

This module must not know the engine, queues or retries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.publish.keys import (
    SMC_HINTS_FIELD,
    SMC_STATE_FIELD,
    SNAPSHOT_CURSOR_FIELD,
    STREAM_FIELD,
    SurfaceKeys,
)
from fxconnector.runtime.publish.surface_writes import SurfacePipeline
from fxconnector.runtime.smc.state import SmcState, encode_state

#: KEYS[1] SMC stream, KEYS[2] SMC snapshot; ARGV[1] MINID (ms), ARGV[2] `hints` JSON,
#: ARGV[3] `state` JSON, ARGV[4] the state's `seq`, ARGV[5..] the hints in emission order.
#: Returns the snapshot's cursor. A write whose `seq` the snapshot's state already has (or
#: passed) was applied before (its reply was lost): nothing is written again.
SMC_LUA: Final = f"""
local held = redis.call('HGET', KEYS[2], '{SMC_STATE_FIELD}')
if held then
  local ok, state = pcall(cjson.decode, held)
  if ok and type(state) == 'table' and tonumber(state['seq'] or 0) >= tonumber(ARGV[4]) then
    return redis.call('HGET', KEYS[2], '{SNAPSHOT_CURSOR_FIELD}')
  end
end
for i = 5, #ARGV do
  redis.call('XADD', KEYS[1], '*', '{STREAM_FIELD}', ARGV[i])
end
local head = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local cursor = '0-0'
if #head > 0 then
  cursor = head[1][1]
end
redis.call('HSET', KEYS[2], '{SMC_HINTS_FIELD}', ARGV[2], '{SMC_STATE_FIELD}', ARGV[3],
  '{SNAPSHOT_CURSOR_FIELD}', cursor)
if #ARGV >= 5 then
  local newest = tonumber(string.match(cursor, '^(%d+)'))
  local minid = math.min(tonumber(ARGV[1]), newest)
  redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%.0f', minid))
end
return cursor
"""
SMC_SHA: Final = hashlib.sha1(SMC_LUA.encode(), usedforsecurity=False).hexdigest()


class SmcWrites:
    """Queues the SMC consumer's writes on a pipeline, in the layout `keys` has."""

    def __init__(self, keys: SurfaceKeys, *, retention_ms: int, clock: Clock) -> None:
        self._keys = keys
        self._retention_ms = retention_ms
        self._clock = clock

    def series(
        self,
        pipe: SurfacePipeline,
        symbol: str,
        tf: Timeframe,
        hints: Sequence[bytes],
        window: bytes,
        state: SmcState,
    ) -> None:
        """One script call: XADD `hints`, then the snapshot (`window`, `state`, cursor);
        nothing when the snapshot already holds write `state.seq`."""
        pipe.execute_command(
            "EVALSHA",
            SMC_SHA,
            2,
            self._keys.smc_events_for(symbol),
            self._keys.smc_snapshot(symbol, tf),
            max(0, self._clock.now_ms() - self._retention_ms),
            window,
            encode_state(state),
            state.seq,
            *hints,
        )
