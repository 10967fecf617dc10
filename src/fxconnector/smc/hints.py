"""Making hints, their canonical order within one bar, and their canonical encodings.

Rules: one hint is one canonical JSON line (`core.utils.json_codec`: fields in declaration
order, defaults left out); hints are ordered by `(confirm_ts, kind, anchor_ts, id)` with kinds in
`SmcKind` declaration order, so every run orders equal hints equally.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from fxconnector.core.model.smc import Direction, SmcHint, SmcKind, hint_id
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils.json_codec import encode, encode_lines

_KIND_ORDER: Final = {kind: rank for rank, kind in enumerate(SmcKind)}

CSV_HEADER: Final = (
    "symbol,tf,kind,id,rev,anchor_ts,confirm_ts,direction,price,top,bottom,ref,retracted\n"
)


class HintMaker:
    """Builds the hints of one symbol/timeframe (rev 0, deterministic id)."""

    __slots__ = ("symbol", "tf")

    def __init__(self, symbol: str, tf: Timeframe) -> None:
        self.symbol = symbol
        self.tf = tf

    def level(
        self,
        kind: SmcKind,
        direction: Direction,
        anchor_ts: int,
        confirm_ts: int,
        price: float,
        ref: str | None = None,
    ) -> SmcHint:
        """A one-price hint."""
        return SmcHint(
            symbol=self.symbol,
            tf=self.tf,
            kind=kind,
            id=hint_id(self.symbol, self.tf, kind, direction, anchor_ts),
            rev=0,
            anchor_ts=anchor_ts,
            confirm_ts=confirm_ts,
            direction=direction,
            price=price,
            ref=ref,
        )

    def zone(
        self,
        kind: SmcKind,
        direction: Direction,
        anchor_ts: int,
        confirm_ts: int,
        top: float,
        bottom: float,
        ref: str | None = None,
    ) -> SmcHint:
        """A zone hint (`top >= bottom`)."""
        return SmcHint(
            symbol=self.symbol,
            tf=self.tf,
            kind=kind,
            id=hint_id(self.symbol, self.tf, kind, direction, anchor_ts),
            rev=0,
            anchor_ts=anchor_ts,
            confirm_ts=confirm_ts,
            direction=direction,
            top=top,
            bottom=bottom,
            ref=ref,
        )

    def lifecycle(self, kind: SmcKind, of: SmcHint, confirm_ts: int) -> SmcHint:
        """The next step in the life of zone `of` (mitigated, swept) at `confirm_ts`."""
        return SmcHint(
            symbol=self.symbol,
            tf=self.tf,
            kind=kind,
            id=hint_id(self.symbol, self.tf, kind, of.direction, of.anchor_ts),
            rev=0,
            anchor_ts=of.anchor_ts,
            confirm_ts=confirm_ts,
            direction=of.direction,
            top=of.top,
            bottom=of.bottom,
            ref=of.id,
        )


def order_key(hint: SmcHint) -> tuple[int, int, int, str]:
    """The canonical order of hints."""
    return (hint.confirm_ts, _KIND_ORDER[hint.kind], hint.anchor_ts, hint.id)


def encode_hint(hint: SmcHint) -> bytes:
    """The canonical JSON of one hint (no newline)."""
    return encode(hint)


def encode_hints(hints: Iterable[SmcHint]) -> bytes:
    """Canonical JSON lines, one hint per line, each ended by a newline."""
    return encode_lines(list(hints))


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def csv_row(hint: SmcHint) -> str:
    """One CSV line (columns of CSV_HEADER), ended by a newline."""
    values = (
        hint.symbol,
        hint.tf.value,
        hint.kind.value,
        hint.id,
        hint.rev,
        hint.anchor_ts,
        hint.confirm_ts,
        hint.direction.value,
        hint.price,
        hint.top,
        hint.bottom,
        hint.ref,
        hint.retracted,
    )
    return ",".join(_csv_value(v) for v in values) + "\n"
