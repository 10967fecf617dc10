"""Every Redis key name of the public surface, in one place (DESIGN §7).

Layout under the namespace `NS` (config `surface.namespace`, default `fxconnector`):

- `NS:ohlcv:events` STREAM, trimmed with `MAXLEN ~ surface.events_maxlen`. Each entry has one
  field, `event`, holding the canonical `ohlcv_event_v1` JSON of a bar update (finals and
  previews, every symbol and timeframe).
- `NS:ohlcv:snap:{symbol}:{tf}` HASH with two fields, written atomically together with the
  events they reflect (one Lua script): `bars`, a JSON array of the last N final bars of that
  series (canonical `ohlcv_event_v1` objects, ascending open_ms, latest revision of each key),
  and `cursor`, the id of the newest stream entry already reflected in `bars`. A consumer that
  reads the hash, then XREADs from `cursor`, sees every later update exactly once.
- `NS:price_tik` HASH: symbol -> canonical `tick_v1` JSON of the last tick.
- `NS:status` STRING: the live `status_v2` JSON, refreshed on a period, with an expiry of a few
  periods so a dead connector's status disappears instead of going stale.
- `NS:status:snapshot` STRING: JSON `{"last_command": ..., "errors": [...]}` (bounded).

There is deliberately no command key or channel: nothing commands the connector through Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from fxconnector.core.time_geom import Timeframe

STREAM_FIELD: Final = "event"
SNAPSHOT_BARS_FIELD: Final = "bars"
SNAPSHOT_CURSOR_FIELD: Final = "cursor"


@dataclass(frozen=True, slots=True)
class SurfaceKeys:
    """Key names under one namespace."""

    namespace: str = "fxconnector"

    @property
    def events(self) -> str:
        return f"{self.namespace}:ohlcv:events"

    def snapshot(self, symbol: str, tf: Timeframe) -> str:
        return f"{self.namespace}:ohlcv:snap:{symbol}:{tf.value}"

    @property
    def snapshot_pattern(self) -> str:
        """A SCAN pattern matching every snapshot key."""
        return f"{self.namespace}:ohlcv:snap:*"

    @property
    def price_tik(self) -> str:
        return f"{self.namespace}:price_tik"

    @property
    def status(self) -> str:
        return f"{self.namespace}:status"

    @property
    def status_snapshot(self) -> str:
        return f"{self.namespace}:status:snapshot"

    def all_fixed(self) -> tuple[str, ...]:
        """The keys that do not depend on a series."""
        return (self.events, self.price_tik, self.status, self.status_snapshot)
