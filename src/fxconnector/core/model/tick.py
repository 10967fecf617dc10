"""Ticks (`tick_v1`): one quote from a broker, stamped with the broker's own time."""

from __future__ import annotations

from typing import Annotated

import msgspec
import numpy as np
import numpy.typing as npt

from fxconnector.core.model.bar import EpochMs, Price, Symbol

Size = Annotated[float, msgspec.Meta(ge=0)]


class Tick(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A quote; volumes are the broker's sizes per side when it sends them."""

    symbol: Symbol
    bid: Price
    ask: Price
    ts_ms: EpochMs
    bid_volume: Size | msgspec.UnsetType = msgspec.UNSET
    ask_volume: Size | msgspec.UnsetType = msgspec.UNSET


class TickBatch(msgspec.Struct, frozen=True):
    """Many ticks of one symbol as numpy columns, in arrival (file) order.

    Used by replay and backfill, where per-tick Python objects would cost more than the work.
    `bid_volume`/`ask_volume` are None when the source has no sizes.
    """

    symbol: str
    ts_ms: npt.NDArray[np.int64]
    bid: npt.NDArray[np.float64]
    ask: npt.NDArray[np.float64]
    bid_volume: npt.NDArray[np.float64] | None = None
    ask_volume: npt.NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return int(self.ts_ms.size)

    def slice(self, start: int, stop: int) -> TickBatch:
        """Rows `[start, stop)` as a new batch (views, no copies)."""
        return TickBatch(
            symbol=self.symbol,
            ts_ms=self.ts_ms[start:stop],
            bid=self.bid[start:stop],
            ask=self.ask[start:stop],
            bid_volume=None if self.bid_volume is None else self.bid_volume[start:stop],
            ask_volume=None if self.ask_volume is None else self.ask_volume[start:stop],
        )

    def select(self, keep: npt.NDArray[np.bool_]) -> TickBatch:
        """The rows where `keep` is true, as a new batch."""
        return TickBatch(
            symbol=self.symbol,
            ts_ms=self.ts_ms[keep],
            bid=self.bid[keep],
            ask=self.ask[keep],
            bid_volume=None if self.bid_volume is None else self.bid_volume[keep],
            ask_volume=None if self.ask_volume is None else self.ask_volume[keep],
        )

    def ticks(self) -> list[Tick]:
        """The rows as Tick structs (for the live path and tests)."""
        bid_vol = self.bid_volume.tolist() if self.bid_volume is not None else None
        ask_vol = self.ask_volume.tolist() if self.ask_volume is not None else None
        out = []
        for i, (ts, bid, ask) in enumerate(
            zip(self.ts_ms.tolist(), self.bid.tolist(), self.ask.tolist(), strict=True)
        ):
            if bid_vol is None or ask_vol is None:
                out.append(Tick(self.symbol, bid, ask, ts))
            else:
                out.append(Tick(self.symbol, bid, ask, ts, bid_vol[i], ask_vol[i]))
        return out
