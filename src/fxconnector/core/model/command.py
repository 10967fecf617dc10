"""Commands (`commands_v1`): `{cmd, req_id, ts, args}`, one struct per command, tagged by `cmd`.

Commands reach the connector only over its local control socket or run directly from the CLI;
never through Redis or HTTP.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec

from fxconnector.core.model.bar import EpochMs, Symbol
from fxconnector.core.time_geom import Timeframe

ReqId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern="^[A-Za-z0-9._:-]+$")]
Symbols = Annotated[list[Symbol], msgspec.Meta(min_length=1, max_length=64)]


class CommandName(StrEnum):
    """Every command there is."""

    WARMUP = "warmup"
    BACKFILL = "backfill"
    TAIL_GUARD = "tail_guard"
    REPUBLISH_TAIL = "republish_tail"
    REBUILD_DERIVED = "rebuild_derived"


class WarmupArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Fill the SSOT from broker history for the last `lookback_mins` minutes."""

    symbols: Symbols
    lookback_mins: Annotated[int, msgspec.Meta(ge=1, le=525_600)]


class RangeArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One symbol over `[from_ms, to_ms)`."""

    symbol: Symbol
    from_ms: EpochMs
    to_ms: EpochMs


class TailGuardArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Audit coverage over the last `window_hours`; fetch what is missing when `repair`."""

    symbols: Symbols
    window_hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 31)]
    repair: bool = False


class RepublishTailArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Re-send the last `bars` finals of one symbol/tf from the SSOT to the surface."""

    symbol: Symbol
    tf: Timeframe
    bars: Annotated[int, msgspec.Meta(ge=1, le=100_000)]


class _Command(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="cmd"):
    req_id: ReqId
    ts: EpochMs


class WarmupCommand(_Command, frozen=True, tag="warmup"):
    """Fetch the last `lookback_mins` minutes of final 1m bars of each symbol from the broker's
    history into the SSOT, derive the higher timeframes, publish what changed."""

    args: WarmupArgs


class BackfillCommand(_Command, frozen=True, tag="backfill"):
    """Fetch one symbol's final 1m bars over `[from_ms, to_ms)` from the broker's history into the
    SSOT, derive the higher timeframes, publish what changed."""

    args: RangeArgs


class TailGuardCommand(_Command, frozen=True, tag="tail_guard"):
    """Audit the coverage of the last `window_hours` (final, quiet, missing minutes; derived
    timeframes checked); with `repair`, fetch the missing minutes under the repair caps and
    publish the revisions."""

    args: TailGuardArgs


class RepublishTailCommand(_Command, frozen=True, tag="republish_tail"):
    """Re-send the last `bars` finals of one symbol and timeframe from the SSOT to the running
    connector's Redis surface (needs the running connector)."""

    args: RepublishTailArgs


class RebuildDerivedCommand(_Command, frozen=True, tag="rebuild_derived"):
    """Derive one symbol's higher-timeframe finals again from its stored 1m finals over `[from_ms,
    to_ms)`; changed bars are stored and published as revisions."""

    args: RangeArgs


Command = (
    WarmupCommand
    | BackfillCommand
    | TailGuardCommand
    | RepublishTailCommand
    | RebuildDerivedCommand
)
