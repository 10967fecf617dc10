"""Every Redis key name of the public surface, in one place (DESIGN §7).

Layout under the namespace `NS` (config `surface.namespace`, default `fxconnector`). Two layouts
share one set of names; `cluster` (config `surface.cluster`) only changes how a symbol is
spelled inside a key: `{SYMBOL}` (a Redis Cluster hash tag, so every key of one symbol lives in
one slot and the atomic event+snapshot write is a single-slot script) instead of `SYMBOL`.

Single node (the default, `cluster = false`):

- `NS:ohlcv:events` STREAM of every symbol's bar updates. Each entry has one field, `event`,
  holding the canonical `ohlcv_event_v1` JSON of a bar update (finals and previews).
- `NS:ohlcv:snap:SYMBOL:TF` HASH with two fields, written atomically together with the events
  they reflect (one Lua script): `bars`, a JSON array of the last N final bars of that series
  (canonical `ohlcv_event_v1` objects, ascending open_ms, latest revision of each key), and
  `cursor`, the id of the newest stream entry already reflected in `bars`. A consumer that
  reads the hash, then XREADs from `cursor`, sees every later update exactly once.
- `NS:price_tik` HASH: symbol -> canonical `tick_v1` JSON of the last tick.

Cluster (`cluster = true`): the same, per symbol, so nothing of one symbol crosses a slot:

- `NS:ohlcv:events:{SYMBOL}` STREAM of that symbol's bar updates (the snapshot's cursor is an
  id of this stream). Readers merge the per-symbol streams.
- `NS:ohlcv:snap:{SYMBOL}:TF` HASH, as above.
- `NS:tick:{SYMBOL}` STRING: canonical `tick_v1` JSON of the symbol's last tick.
- `NS:lease:{SYMBOL}` STRING: the process id holding the symbol, with an expiry renewed while
  the process runs (one writer per symbol across processes).

Both layouts:

- `NS:symbols` SET: every symbol some process of the namespace publishes (readers use it to
  find the per-symbol keys; written once at start).
- `NS:status:proc:PROCESS` STRING: the live `status_v2` summary JSON of one process
  (`PROCESS` = the status `process.id`, `HOSTNAME:PID`), refreshed on a period with an expiry
  of a few periods so a dead connector's status disappears instead of going stale.
- `NS:status:procs` SORTED SET: the namespace's live processes (member: process id, score: ms
  of its last status write); entries older than the expiry are removed by the writers.
- `NS:status` STRING: the same summary, written only while one process is alive in the
  namespace (the single-process default); absent while several are (read the per-process keys).
- `NS:status:sym:SYMBOL` (`{SYMBOL}` in cluster) STRING: that symbol's `status_symbol_v1`
  detail, same expiry.
- `NS:status:snapshot` STRING: JSON `{"last_command": ..., "errors": [...]}` (bounded).

SMC layer (`runtime.smc`, DESIGN §15), written by the SMC consumer only, same layouts:

- `NS:smc:events` STREAM (cluster: `NS:smc:events:{SYMBOL}`) of every published SMC hint.
  Each entry has one field, `event`, holding the canonical `smc_hint_v1` JSON of one hint.
- `NS:smc:snap:SYMBOL:TF` HASH (cluster: `NS:smc:snap:{SYMBOL}:TF`), written atomically with
  the hints it reflects (one Lua script, one slot): `hints`, a JSON array of the series'
  active hints and its newest ones (bounded, in emission order); `cursor`, the id of the
  newest SMC stream entry reflected in `hints`; `state`, where the consumer stands in the
  series (`smc_state`: the first and the last final bar it fed its engine).

Execution (`fxconnector exec`, DESIGN §16; the same names in both layouts, written by the one
exec process of the namespace, never atomically across keys):

- `NS:exec:events` STREAM of `exec_event_v1` JSON (field `event`): every order state change,
  fill, position change and risk decision, in journal order; trimmed by count (MAXLEN ~).
- `NS:exec:orders` HASH: intent_id -> the order's latest `exec_event_v1` JSON.
- `NS:exec:positions` HASH: `TRADER:SYMBOL` -> the position's latest `exec_event_v1` JSON.
- `NS:exec:risk` STRING: the latest risk-state `exec_event_v1` JSON (trading state, reason).
- `NS:exec:seq` STRING: the journal sequence number the keys above reflect; a lower or missing
  value (a restarted Redis) makes the exec process republish them from its journal.

Streams are trimmed by time (MINID, `surface.events_retention_s`), not by count (the exec
events stream excepted, above).

There is deliberately no command key or channel: nothing commands the connector through Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from fxconnector.core.time_geom import Timeframe

STREAM_FIELD: Final = "event"
SNAPSHOT_BARS_FIELD: Final = "bars"
SNAPSHOT_CURSOR_FIELD: Final = "cursor"
SMC_HINTS_FIELD: Final = "hints"
SMC_STATE_FIELD: Final = "state"


@dataclass(frozen=True, slots=True)
class SurfaceKeys:
    """Key names under one namespace, in the single-node or the cluster layout."""

    namespace: str = "fxconnector"
    cluster: bool = False

    def tag(self, symbol: str) -> str:
        """How `symbol` is spelled inside a key: `{SYMBOL}` (hash tag) in the cluster layout."""
        return f"{{{symbol}}}" if self.cluster else symbol

    @property
    def events(self) -> str:
        """The single-node layout's one events stream."""
        return f"{self.namespace}:ohlcv:events"

    def events_for(self, symbol: str) -> str:
        """The stream holding `symbol`'s events: its own in the cluster layout."""
        return f"{self.namespace}:ohlcv:events:{{{symbol}}}" if self.cluster else self.events

    def snapshot(self, symbol: str, tf: Timeframe) -> str:
        return f"{self.namespace}:ohlcv:snap:{self.tag(symbol)}:{tf.value}"

    @property
    def snapshot_pattern(self) -> str:
        """A SCAN pattern matching every snapshot key."""
        return f"{self.namespace}:ohlcv:snap:*"

    @property
    def smc_events(self) -> str:
        """The single-node layout's one SMC hints stream."""
        return f"{self.namespace}:smc:events"

    def smc_events_for(self, symbol: str) -> str:
        """The stream holding `symbol`'s SMC hints: its own in the cluster layout."""
        return f"{self.namespace}:smc:events:{{{symbol}}}" if self.cluster else self.smc_events

    def smc_snapshot(self, symbol: str, tf: Timeframe) -> str:
        return f"{self.namespace}:smc:snap:{self.tag(symbol)}:{tf.value}"

    @property
    def price_tik(self) -> str:
        """The single-node layout's last-tick hash (symbol -> tick JSON)."""
        return f"{self.namespace}:price_tik"

    def tick(self, symbol: str) -> str:
        """The cluster layout's last-tick string of `symbol`."""
        return f"{self.namespace}:tick:{{{symbol}}}"

    def lease(self, symbol: str) -> str:
        return f"{self.namespace}:lease:{{{symbol}}}"

    @property
    def symbols(self) -> str:
        return f"{self.namespace}:symbols"

    @property
    def status(self) -> str:
        return f"{self.namespace}:status"

    def status_process(self, process_id: str) -> str:
        return f"{self.namespace}:status:proc:{process_id}"

    @property
    def status_processes(self) -> str:
        return f"{self.namespace}:status:procs"

    def status_symbol(self, symbol: str) -> str:
        return f"{self.namespace}:status:sym:{self.tag(symbol)}"

    @property
    def status_snapshot(self) -> str:
        return f"{self.namespace}:status:snapshot"

    @property
    def exec_events(self) -> str:
        return f"{self.namespace}:exec:events"

    @property
    def exec_orders(self) -> str:
        return f"{self.namespace}:exec:orders"

    @property
    def exec_positions(self) -> str:
        return f"{self.namespace}:exec:positions"

    @property
    def exec_risk(self) -> str:
        return f"{self.namespace}:exec:risk"

    @property
    def exec_process(self) -> str:
        """The live exec process's `exec_process_v1`, with a time to live of a few periods."""
        return f"{self.namespace}:exec:process"

    @property
    def exec_seq(self) -> str:
        return f"{self.namespace}:exec:seq"

    def all_fixed(self) -> tuple[str, ...]:
        """The keys that do not depend on a series or a process."""
        return (
            self.events,
            self.price_tik,
            self.symbols,
            self.status,
            self.status_processes,
            self.status_snapshot,
        )
