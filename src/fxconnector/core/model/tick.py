"""Ticks (`tick_v1`): one quote from a broker, stamped with the broker's own time."""

from __future__ import annotations

from typing import Annotated

import msgspec

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
