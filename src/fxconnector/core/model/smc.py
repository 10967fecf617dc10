"""SMC hints (DESIGN §15): the public `smc_hint_v1` payload.

Rules: a hint is never changed after it is emitted. It names the bar it refers to (`anchor_ts`,
that bar's open_ms) and the final bar at which it became knowable (`confirm_ts`, that bar's
close_ms). Mitigation, a break or a sweep is a new hint of its own kind whose `ref` is the `id` of
the hint it refers to. Only a revision of a final bar upstream re-issues a hint: same `id`,
`rev + 1`, with the re-derived content, or `retracted: true` when the re-derivation no longer
finds it. The `id` is derived from symbol, tf, kind, direction and anchor_ts, so any run over the
same bars gives the same ids. Fields with a default are left out of the canonical line.

Cross-field rules (which level fields a kind carries, `ref` on lifecycle kinds,
`confirm_ts >= anchor_ts`, `bottom <= top`) are checked by `hint_problems`, as `bar_problems`
does for bars.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

import msgspec

from fxconnector.core.model.bar import Count, EpochMs, Price, Symbol
from fxconnector.core.time_geom import Timeframe


class SmcKind(StrEnum):
    """Every kind of SMC hint (docs/smc.md defines each)."""

    SWING_HIGH = "swing_high"
    SWING_LOW = "swing_low"
    FVG = "fvg"
    FVG_MITIGATED = "fvg_mitigated"
    BOS = "bos"
    CHOCH = "choch"
    OB = "ob"
    OB_MITIGATED = "ob_mitigated"
    LIQUIDITY = "liquidity"
    LIQUIDITY_SWEPT = "liquidity_swept"
    PREV_DAY_HIGH = "prev_day_high"
    PREV_DAY_LOW = "prev_day_low"
    PREV_WEEK_HIGH = "prev_week_high"
    PREV_WEEK_LOW = "prev_week_low"
    SESSION_ASIA = "session_asia"
    SESSION_LONDON = "session_london"
    SESSION_NEW_YORK = "session_new_york"


class Direction(StrEnum):
    """Bullish or bearish; for levels at highs `bear`, at lows `bull` (docs/smc.md)."""

    BULL = "bull"
    BEAR = "bear"


#: Kinds that carry one level, `price`.
PRICE_KINDS: Final = frozenset(
    {
        SmcKind.SWING_HIGH,
        SmcKind.SWING_LOW,
        SmcKind.BOS,
        SmcKind.CHOCH,
        SmcKind.PREV_DAY_HIGH,
        SmcKind.PREV_DAY_LOW,
        SmcKind.PREV_WEEK_HIGH,
        SmcKind.PREV_WEEK_LOW,
    }
)
#: Kinds that carry a zone, `top` and `bottom`.
ZONE_KINDS: Final = frozenset(
    {
        SmcKind.FVG,
        SmcKind.FVG_MITIGATED,
        SmcKind.OB,
        SmcKind.OB_MITIGATED,
        SmcKind.LIQUIDITY,
        SmcKind.LIQUIDITY_SWEPT,
        SmcKind.SESSION_ASIA,
        SmcKind.SESSION_LONDON,
        SmcKind.SESSION_NEW_YORK,
    }
)
#: Kinds that refer to an earlier hint through `ref`.
REF_KINDS: Final = frozenset(
    {
        SmcKind.FVG_MITIGATED,
        SmcKind.BOS,
        SmcKind.CHOCH,
        SmcKind.OB,
        SmcKind.OB_MITIGATED,
        SmcKind.LIQUIDITY_SWEPT,
    }
)


class SmcHint(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One SMC hint: an object of the market structure, or a step in an earlier one's life."""

    symbol: Symbol
    tf: Timeframe
    kind: SmcKind
    id: str
    rev: Count
    anchor_ts: EpochMs
    confirm_ts: EpochMs
    direction: Direction
    price: Price | None = None
    top: Price | None = None
    bottom: Price | None = None
    ref: str | None = None
    retracted: bool = False


def hint_id(symbol: str, tf: Timeframe, kind: SmcKind, direction: Direction, anchor_ts: int) -> str:
    """The deterministic id of a hint: the same bars give the same id in every run."""
    return f"{symbol}:{tf.value}:{kind.value}:{direction.value}:{anchor_ts}"
