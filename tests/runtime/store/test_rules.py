"""`to_stored` builds the stored final positionally (a hot path): every field lands where its
name says, whatever order the struct declares them in."""

from __future__ import annotations

import msgspec

from fxconnector.core.model.bar import OhlcvEvent, Source, StoredFinal
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.store.rules import to_stored


def test_to_stored_copies_every_field_by_name() -> None:
    bar = OhlcvEvent(
        symbol="GBPJPY",
        tf=Timeframe.M5,
        open_ms=1_354_492_800_000,
        close_ms=1_354_493_099_999,
        open=132.141,
        high=132.148,
        low=132.107,
        close=132.133,
        volume=88.5,
        tick_count=87,
        complete=True,
        source=Source.DERIVED,
        event_ts=1_354_493_099_999,
        rev=9,
    )
    stored = to_stored(bar, 3, "repair")
    expected = StoredFinal(**{**msgspec.structs.asdict(bar), "rev": 3, "reason": "repair"})
    assert stored == expected
    assert type(stored.source) is Source
