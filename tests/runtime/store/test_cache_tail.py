"""The tail cache: a bounded window per series, revisions in place, rebuilt from a store."""

from __future__ import annotations

from pathlib import Path

import pytest

from fxconnector.core.errors import ContractViolation
from fxconnector.core.model.bar import StoredFinal
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.runtime.store.cache_tail import TailCache
from fxconnector.runtime.store.factory import StoreKind
from fxconnector.runtime.store.rules import to_stored
from tests.runtime.store.test_store_suite import KINDS, MONDAY_MS, make_bar, open_kind


def stored(
    i: int, *, rev: int = 0, tf: Timeframe = Timeframe.M1, shift: float = 0.0
) -> StoredFinal:
    return to_stored(make_bar(i, tf=tf, shift=shift), rev, "repair" if rev else "")


def opens(bars: list[StoredFinal]) -> list[int]:
    return [(b.open_ms - MONDAY_MS) // b.tf.ms for b in bars]


def test_the_window_keeps_the_newest_bars_in_order() -> None:
    cache = TailCache(window=5)
    for i in (0, 1, 2, 3, 4, 5, 6, 7):
        cache.apply(stored(i))

    assert opens(cache.tail("EURUSD", Timeframe.M1, limit=100)) == [3, 4, 5, 6, 7]
    assert opens(cache.tail("EURUSD", Timeframe.M1, limit=2)) == [6, 7]
    assert cache.tail("EURUSD", Timeframe.M1, limit=0) == []
    assert cache.tail("EURUSD", Timeframe.M5, limit=10) == []
    assert cache.tail("GBPUSD", Timeframe.M1, limit=10) == []


def test_late_bars_are_inserted_in_order_or_dropped_when_older_than_the_window() -> None:
    cache = TailCache(window=4)
    for i in (10, 12, 14):
        cache.apply(stored(i))
    cache.apply(stored(11))  # fits between: kept in order
    cache.apply(stored(13))  # the window is full: the oldest (10) goes
    cache.apply(stored(9))  # older than a full window: ignored

    assert opens(cache.tail("EURUSD", Timeframe.M1, limit=10)) == [11, 12, 13, 14]


def test_a_revision_replaces_its_key_and_an_older_one_does_not() -> None:
    cache = TailCache(window=3)
    for i in range(3):
        cache.apply(stored(i))
    cache.apply(stored(1, rev=1, shift=0.0001))
    cache.apply(stored(1, rev=0))  # a stale revision arriving late

    tail = cache.tail("EURUSD", Timeframe.M1, limit=10)
    assert opens(tail) == [0, 1, 2]
    assert (tail[1].rev, tail[1].reason, tail[1].open) == (1, "repair", round(1.14570 + 0.0001, 5))


def test_tail_filters_by_open_ms_range() -> None:
    cache = TailCache(window=10)
    for i in range(10):
        cache.apply(stored(i))
    start = MONDAY_MS + 2 * MINUTE_MS
    end = MONDAY_MS + 6 * MINUTE_MS

    assert opens(cache.tail("EURUSD", Timeframe.M1, 10, from_ms=start, to_ms=end)) == [2, 3, 4, 5]
    assert opens(cache.tail("EURUSD", Timeframe.M1, 2, from_ms=start, to_ms=end)) == [4, 5]
    assert opens(cache.tail("EURUSD", Timeframe.M1, 3, to_ms=end)) == [3, 4, 5]
    assert opens(cache.tail("EURUSD", Timeframe.M1, 3, from_ms=start)) == [7, 8, 9]


def test_a_window_must_hold_at_least_one_bar() -> None:
    with pytest.raises(ContractViolation):
        TailCache(window=0)


@pytest.mark.parametrize("kind", KINDS)
def test_rebuild_loads_the_last_window_of_every_series(kind: StoreKind, tmp_path: Path) -> None:
    store = open_kind(kind, tmp_path / "ssot")
    try:
        # 300 minutes, then a 3-day hole, then 50 more: the window must reach across the hole.
        minutes = [*range(300), *range(3 * 1440, 3 * 1440 + 50)]
        store.append([make_bar(i) for i in minutes])
        store.append([make_bar(4330, shift=0.0001)], reason="repair")
        store.append([make_bar(i, tf=Timeframe.M5) for i in range(7)])
        cache = TailCache(window=120)
        cache.apply(stored(9999, tf=Timeframe.H1))  # forgotten by rebuild

        cache.rebuild(store)

        m1 = cache.tail("EURUSD", Timeframe.M1, limit=1000)
        assert m1 == list(store.bars("EURUSD", Timeframe.M1))[-120:]
        assert opens(m1) == [*range(230, 300), *range(4320, 4370)]
        assert [b.rev for b in m1].index(1) == 70 + 10  # minute 4330, revised
        assert opens(cache.tail("EURUSD", Timeframe.M5, limit=1000)) == list(range(7))
        assert cache.tail("EURUSD", Timeframe.H1, limit=10) == []
    finally:
        store.close()
