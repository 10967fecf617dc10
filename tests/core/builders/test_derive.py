"""prepend_head: a preview that started mid-bucket gets the bucket's earlier finals, folded once."""

from __future__ import annotations

from fxconnector.core.builders.derive import BucketHead, prepend_head
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import Timeframe

T0 = 1_549_238_400_000


def final(minute: int, o: float, h: float, lo: float, c: float, n: int) -> OhlcvEvent:
    open_ms = T0 + minute * 60_000
    return OhlcvEvent(
        "EURUSD",
        Timeframe.M1,
        open_ms,
        open_ms + 59_999,
        o,
        h,
        lo,
        c,
        n,
        n,
        True,
        Source.HISTORY,
        open_ms + 59_999,
        0,
    )


def test_prepend_head_folds_the_head_of_the_bucket() -> None:
    preview = OhlcvEvent(
        "EURUSD",
        Timeframe.M5,
        T0,
        T0 + 299_999,
        1.2,
        1.25,
        1.19,
        1.22,
        3,
        3,
        False,
        Source.STREAM,
        T0 + 200_000,
        0,
    )
    head = [final(0, 1.1, 1.3, 1.1, 1.2, 5), final(1, 1.2, 1.21, 1.05, 1.2, 4)]
    folded = BucketHead.fold(head)
    assert folded is not None
    assert folded.last_open_ms == head[-1].open_ms
    merged = prepend_head(preview, folded)
    assert (merged.open, merged.high, merged.low, merged.close) == (1.1, 1.3, 1.05, 1.22)
    assert (merged.volume, merged.tick_count) == (12, 12)
    assert merged.complete is False
    assert merged.source is Source.STREAM
    assert merged.event_ts == preview.event_ts
    assert BucketHead.fold([]) is None
    assert prepend_head(preview, None) is preview
