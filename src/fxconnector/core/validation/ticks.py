"""Tick validation rails (DESIGN §5.2): a reason per reject, never an exception.

Rules: a tick is rejected when its symbol is not allowlisted, a price is NaN, infinite or not
positive, ask is below bid by more than the configured tolerance, its time is before the epoch
rail or too far past the caller's `now`, or the calendar says the market is closed then. The
caller counts rejects by reason and samples a few into `errors[]`. The vectorised form gives the
same reason for the same tick.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from fxconnector.core.model.tick import TickBatch


class RejectReason(StrEnum):
    UNKNOWN_SYMBOL = "unknown_symbol"
    BAD_PRICE = "bad_price"
    CROSSED_QUOTE = "crossed_quote"
    BEFORE_EPOCH_RAIL = "before_epoch_rail"
    FUTURE_TIMESTAMP = "future_timestamp"
    MARKET_CLOSED = "market_closed"


@dataclass(frozen=True, slots=True)
class TickRails:
    """Limits a tick must respect."""

    symbols: frozenset[str]
    max_spread_inversion: float = 0.0
    max_future_ms: int = 5_000
    epoch_rail_ms: int = 946_684_800_000  # 2000-01-01T00:00:00Z


def check_tick(
    rails: TickRails,
    symbol: str,
    bid: float,
    ask: float,
    ts_ms: int,
    now_ms: int,
    market_open: bool,
) -> RejectReason | None:
    """The reason to reject one tick, or None when it is good.

    `market_open` is the calendar's answer for `ts_ms` (the caller caches sessions).
    """
    if symbol not in rails.symbols:
        return RejectReason.UNKNOWN_SYMBOL
    # Chained comparisons are False for NaN, so this also rejects NaN and infinities.
    if not (0.0 < bid < _INF and 0.0 < ask < _INF):
        return RejectReason.BAD_PRICE
    if bid - ask > rails.max_spread_inversion:
        return RejectReason.CROSSED_QUOTE
    if ts_ms < rails.epoch_rail_ms:
        return RejectReason.BEFORE_EPOCH_RAIL
    if ts_ms > now_ms + rails.max_future_ms:
        return RejectReason.FUTURE_TIMESTAMP
    if not market_open:
        return RejectReason.MARKET_CLOSED
    return None


_INF = math.inf


#: Reasons in check order; the vectorised form assigns the first that applies, like check_tick.
REASON_ORDER: tuple[RejectReason, ...] = tuple(RejectReason)


def check_batch(
    rails: TickRails,
    batch: TickBatch,
    now_ms: npt.NDArray[np.int64] | int,
    is_open: Callable[[npt.NDArray[np.int64]], npt.NDArray[np.bool_]],
) -> npt.NDArray[np.int8]:
    """Per tick: -1 when good, else the index of its reason in REASON_ORDER."""
    size = len(batch)
    codes = np.full(size, -1, dtype=np.int8)
    if batch.symbol not in rails.symbols:
        codes[:] = REASON_ORDER.index(RejectReason.UNKNOWN_SYMBOL)
        return codes
    bid, ask, ts = batch.bid, batch.ask, batch.ts_ms
    with np.errstate(invalid="ignore"):
        checks: list[tuple[RejectReason, npt.NDArray[np.bool_]]] = [
            (
                RejectReason.BAD_PRICE,
                ~((bid > 0) & (ask > 0) & np.isfinite(bid) & np.isfinite(ask)),
            ),
            (RejectReason.CROSSED_QUOTE, (bid - ask) > rails.max_spread_inversion),
            (RejectReason.BEFORE_EPOCH_RAIL, ts < rails.epoch_rail_ms),
            (RejectReason.FUTURE_TIMESTAMP, ts > np.asarray(now_ms) + rails.max_future_ms),
        ]
    for reason, bad in checks:
        codes[(codes < 0) & bad] = REASON_ORDER.index(reason)
    pending = codes < 0
    if pending.any():
        closed = ~is_open(ts[pending])
        idx = np.flatnonzero(pending)[closed]
        codes[idx] = REASON_ORDER.index(RejectReason.MARKET_CLOSED)
    return codes


def count_reasons(codes: npt.NDArray[np.int8]) -> dict[str, int]:
    """Rejects by reason name, for codes from `check_batch`."""
    counts = np.bincount(codes[codes >= 0], minlength=len(REASON_ORDER))
    return {REASON_ORDER[i].value: int(n) for i, n in enumerate(counts) if n}
