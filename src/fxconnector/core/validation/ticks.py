"""Tick validation rails (DESIGN §5.2): a reason per reject, never an exception.

Rules: a tick is rejected when its symbol is not allowlisted, a price is NaN, infinite or not
positive, a price is outside the sane band `[min_price, max_price]`, ask is below bid by more than
the configured tolerance, a size (when the broker sends one) is negative, NaN or above
`max_volume`, its time is before the epoch rail or too far past the caller's `now`, or the
calendar says the market is closed then. The caller counts rejects by reason and samples a few
into `errors[]`. The vectorised form gives the same reason for the same tick.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from fxconnector.core.errors import ContractViolation
from fxconnector.core.model.tick import TickBatch


class RejectReason(StrEnum):
    UNKNOWN_SYMBOL = "unknown_symbol"
    BAD_PRICE = "bad_price"
    PRICE_OUT_OF_RANGE = "price_out_of_range"
    CROSSED_QUOTE = "crossed_quote"
    BAD_VOLUME = "bad_volume"
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
    # Every FX rate, metal and index CFD lives well inside this band (USDIDR ~1.6e4, BTCUSD
    # ~1e5); 1e308 or 1e-300 is a broken feed, not a price.
    min_price: float = 1e-6
    max_price: float = 1e7
    #: A tick's size per side; FX sizes are units or lots, far below this.
    max_volume: float = 1e12

    def __post_init__(self) -> None:
        # The fast path in the pipeline relies on 0 < min_price <= max_price < inf.
        if not (0.0 < self.min_price <= self.max_price < math.inf and self.max_volume >= 0.0):
            raise ContractViolation(
                f"tick rails: need 0 < min_price <= max_price < inf and max_volume >= 0, got "
                f"{self.min_price}, {self.max_price}, {self.max_volume}"
            )


def check_tick(
    rails: TickRails,
    symbol: str,
    bid: float,
    ask: float,
    ts_ms: int,
    now_ms: int,
    market_open: bool,
    bid_volume: float | None = None,
    ask_volume: float | None = None,
) -> RejectReason | None:
    """The reason to reject one tick, or None when it is good.

    `market_open` is the calendar's answer for `ts_ms` (the caller caches sessions); volumes
    are None when the broker sends no sizes.
    """
    if symbol not in rails.symbols:
        return RejectReason.UNKNOWN_SYMBOL
    # Chained comparisons are False for NaN, so this also rejects NaN and infinities.
    if not (0.0 < bid < _INF and 0.0 < ask < _INF):
        return RejectReason.BAD_PRICE
    if not (
        rails.min_price <= bid <= rails.max_price and rails.min_price <= ask <= rails.max_price
    ):
        return RejectReason.PRICE_OUT_OF_RANGE
    if bid - ask > rails.max_spread_inversion:
        return RejectReason.CROSSED_QUOTE
    if not (_size_ok(bid_volume, rails.max_volume) and _size_ok(ask_volume, rails.max_volume)):
        return RejectReason.BAD_VOLUME
    if ts_ms < rails.epoch_rail_ms:
        return RejectReason.BEFORE_EPOCH_RAIL
    if ts_ms > now_ms + rails.max_future_ms:
        return RejectReason.FUTURE_TIMESTAMP
    if not market_open:
        return RejectReason.MARKET_CLOSED
    return None


_INF = math.inf


def _size_ok(volume: float | None, max_volume: float) -> bool:
    return volume is None or 0.0 <= volume <= max_volume


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
    lo, hi = rails.min_price, rails.max_price
    with np.errstate(invalid="ignore", over="ignore"):
        checks: list[tuple[RejectReason, npt.NDArray[np.bool_]]] = [
            (
                RejectReason.BAD_PRICE,
                ~((bid > 0) & (ask > 0) & np.isfinite(bid) & np.isfinite(ask)),
            ),
            (
                RejectReason.PRICE_OUT_OF_RANGE,
                ~((bid >= lo) & (bid <= hi) & (ask >= lo) & (ask <= hi)),
            ),
            (RejectReason.CROSSED_QUOTE, (bid - ask) > rails.max_spread_inversion),
            (
                RejectReason.BAD_VOLUME,
                ~(
                    _sizes_ok(batch.bid_volume, rails.max_volume, size)
                    & _sizes_ok(batch.ask_volume, rails.max_volume, size)
                ),
            ),
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


def _sizes_ok(
    volume: npt.NDArray[np.float64] | None, max_volume: float, size: int
) -> npt.NDArray[np.bool_]:
    if volume is None:
        return np.ones(size, dtype=np.bool_)
    return (volume >= 0) & (volume <= max_volume)


def count_reasons(codes: npt.NDArray[np.int8]) -> dict[str, int]:
    """Rejects by reason name, for codes from `check_batch`."""
    counts = np.bincount(codes[codes >= 0], minlength=len(REASON_ORDER))
    return {REASON_ORDER[i].value: int(n) for i, n in enumerate(counts) if n}
