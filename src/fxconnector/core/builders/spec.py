"""How ticks become bars: price side, open mode, volume mode, and the bar arithmetic they share.

Rules (shared by the live and vectorised builders so they agree exactly):
- A bar's open is the price of its earliest tick by tick time (ties: earliest arrival) in
  `first_tick` mode, or the previous bar's close in `previous_close` mode (as FXCM does; the
  first bar of a stream has no previous bar and uses its first tick). high/low include the open.
- A bar's close is the price of its latest tick by tick time (ties: latest arrival).
- `ticks` volume is the tick count (an int); `size` volume is the sum of that side's sizes in
  arrival order (`mid`: the mean of both sides' sizes).
- Bars above 1m are composed from 1m bars: open of the first, close of the last, max/min, and
  volumes and counts summed in minute order. Preview and final bars above 1m use the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PriceSide(StrEnum):
    BID = "bid"
    ASK = "ask"
    MID = "mid"


class OpenMode(StrEnum):
    FIRST_TICK = "first_tick"
    PREVIOUS_CLOSE = "previous_close"


class VolumeMode(StrEnum):
    TICKS = "ticks"
    SIZE = "size"


@dataclass(frozen=True, slots=True)
class BarSpec:
    """The three choices that define bars built from ticks."""

    price: PriceSide = PriceSide.BID
    open_mode: OpenMode = OpenMode.FIRST_TICK
    volume: VolumeMode = VolumeMode.TICKS
