"""Latest prices for `fxconnector exec`, read from the public surface (DESIGN §7).

Rules:
- Read-only: the last tick of each symbol from `NS:price_tik` (one HGETALL) or, in the cluster
  layout, each symbol's `NS:tick:{SYMBOL}` (one GET per symbol, pipelined). Key names come
  from `keys.py` only.
- Every value is decoded into the `tick_v1` model (closed): a malformed value is skipped and
  counted, never used for a fill or a risk check.
- Redis trouble is SurfaceUnavailable; the caller keeps its last prices and their age decides
  (the stale-price check denies orders on a price older than its bound).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from redis.exceptions import RedisError

from fxconnector.core.errors import SurfaceUnavailable
from fxconnector.core.model.tick import Tick
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.redis_connect import SurfaceClient

_DECODER = msgspec.json.Decoder(Tick)


class PriceReader:
    """Reads the surface's last ticks."""

    def __init__(self, redis_client: SurfaceClient, keys: SurfaceKeys) -> None:
        self._redis = redis_client
        self._keys = keys
        #: Values that were not valid `tick_v1` JSON (skipped).
        self.rejected = 0

    async def latest(self, symbols: Iterable[str]) -> dict[str, Tick]:
        """symbol -> its last tick, for those of `symbols` the surface has."""
        wanted = list(symbols)
        try:
            if self._keys.cluster:
                pipe: Any = self._redis.pipeline(transaction=False)
                for symbol in wanted:
                    pipe.get(self._keys.tick(symbol))
                values = await pipe.execute()
                raw = dict(zip(wanted, values, strict=True))
            else:
                found: Any = await self._redis.hmget(self._keys.price_tik, wanted)
                raw = dict(zip(wanted, found, strict=True))
        except (RedisError, OSError) as exc:
            raise SurfaceUnavailable(f"reading prices: {type(exc).__name__}: {exc}") from exc
        out: dict[str, Tick] = {}
        for symbol, value in raw.items():
            if value is None:
                continue
            try:
                tick = _DECODER.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.rejected += 1
                continue
            if tick.symbol != symbol:
                self.rejected += 1
                continue
            out[symbol] = tick
        return out
