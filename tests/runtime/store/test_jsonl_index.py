"""The JSONL store's day index: memory bounded by the day cache, reads touch only their days,
appends stay idempotent when the days they need were evicted, readers may use other threads."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from fxconnector.core.errors import StoreError
from fxconnector.core.time_geom import DAY_MS, MINUTE_MS, Timeframe
from fxconnector.runtime.store.cache_tail import first_finals, last_finals
from fxconnector.runtime.store.port import AppendOutcome
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.runtime.store.test_store_suite import MONDAY_MS, make_bar

DAYS = 12
PER_DAY = 240  # four hours of 1m a day keeps the test small


def _filled(path: Path, cache_bars: int) -> JsonlStore:
    store = JsonlStore(path, cache_bars=cache_bars)
    store.open()
    for day in range(DAYS):
        store.append(
            [make_bar(i, open_ms=MONDAY_MS + day * DAY_MS + i * MINUTE_MS) for i in range(PER_DAY)]
        )
    store.close()
    reopened = JsonlStore(path, cache_bars=cache_bars)
    reopened.open()
    return reopened


def _day_file(root: Path, day: int) -> Path:
    return root / "EURUSD" / "1m" / f"{_iso(MONDAY_MS + day * DAY_MS)}.jsonl"


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).date().isoformat()


def test_open_keeps_an_index_not_the_bars(tmp_path: Path) -> None:
    store = _filled(tmp_path / "ssot", cache_bars=3 * PER_DAY)
    try:
        assert store.cached_bars == 0  # every line was checked, none is held
        assert store.last_open_ms("EURUSD", Timeframe.M1) == (
            MONDAY_MS + (DAYS - 1) * DAY_MS + (PER_DAY - 1) * MINUTE_MS
        )
        everything = list(store.bars("EURUSD", Timeframe.M1))
        assert len(everything) == DAYS * PER_DAY
        assert [b.open_ms for b in everything] == sorted(b.open_ms for b in everything)
        assert store.cached_bars <= 3 * PER_DAY  # bounded by the cache, not by the history
    finally:
        store.close()


def test_reads_touch_only_the_days_asked_for(tmp_path: Path) -> None:
    root = tmp_path / "ssot"
    store = _filled(root, cache_bars=PER_DAY)
    try:
        _day_file(root, 2).unlink()  # a day no read below needs is gone from disk
        later = list(
            store.bars("EURUSD", Timeframe.M1, MONDAY_MS + 5 * DAY_MS, MONDAY_MS + 7 * DAY_MS)
        )
        assert len(later) == 2 * PER_DAY
        assert len(first_finals(store, "EURUSD", Timeframe.M1, 0, None, 100)) == 100  # day 0
        assert len(last_finals(store, "EURUSD", Timeframe.M1, 300)) == 300  # the last two days
        # A key on a day without a file, or outside a day's first..last, is answered from
        # the index alone.
        assert store.latest("EURUSD", Timeframe.M1, MONDAY_MS + 2 * DAY_MS + 23 * 3_600_000) is None
        assert store.latest("EURUSD", Timeframe.M1, MONDAY_MS - DAY_MS) is None
        with pytest.raises(StoreError, match="cannot read"):
            store.latest("EURUSD", Timeframe.M1, MONDAY_MS + 2 * DAY_MS)
        with pytest.raises(StoreError, match="cannot read"):
            list(store.bars("EURUSD", Timeframe.M1, MONDAY_MS, MONDAY_MS + 4 * DAY_MS))
    finally:
        store.close()


def test_appends_stay_idempotent_when_their_days_were_evicted(tmp_path: Path) -> None:
    root = tmp_path / "ssot"
    store = _filled(root, cache_bars=1)  # every day but the last used is evicted
    try:
        again = [
            make_bar(i, open_ms=MONDAY_MS + d * DAY_MS + i * MINUTE_MS)
            for d in (0, 7, 3)
            for i in (0, 9)
        ]
        assert {r.outcome for r in store.append(again)} == {AppendOutcome.DUPLICATE}
        changed = make_bar(9, open_ms=MONDAY_MS + 3 * DAY_MS + 9 * MINUTE_MS, shift=0.001)
        (result,) = store.append([changed], reason="broker correction")
        assert result.outcome is AppendOutcome.REVISION
        assert result.stored.rev == 1
        list(store.bars("EURUSD", Timeframe.M1, MONDAY_MS + 8 * DAY_MS))  # evicts day 3 again
        assert store.latest("EURUSD", Timeframe.M1, changed.open_ms) == result.stored
        (repeat,) = store.append([changed])
        assert repeat.outcome is AppendOutcome.DUPLICATE
        new_day = make_bar(0, open_ms=MONDAY_MS + 20 * DAY_MS)
        assert store.append([new_day])[0].outcome is AppendOutcome.NEW
        day3 = list(
            store.bars("EURUSD", Timeframe.M1, MONDAY_MS + 3 * DAY_MS, MONDAY_MS + 4 * DAY_MS)
        )
        assert [b.rev for b in day3].count(1) == 1
        assert len(day3) == PER_DAY
    finally:
        store.close()
    reopened = JsonlStore(root, cache_bars=1)
    report = reopened.open()
    try:
        assert report.bars_loaded == DAYS * PER_DAY + 1
        assert reopened.latest("EURUSD", Timeframe.M1, changed.open_ms) == result.stored
        assert reopened.last_open_ms("EURUSD", Timeframe.M1) == new_day.open_ms
    finally:
        reopened.close()


def test_a_reader_thread_sees_whole_days_while_the_writer_appends(tmp_path: Path) -> None:
    root = tmp_path / "ssot"
    store = _filled(root, cache_bars=PER_DAY)
    problems: list[BaseException] = []
    sizes: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                bars = list(store.bars("EURUSD", Timeframe.M1, MONDAY_MS, None))
                opens = [b.open_ms for b in bars]
                assert opens == sorted(set(opens))  # never a torn or doubled key
                assert len(bars) % PER_DAY == 0  # whole days only
                sizes.append(len(bars))
        except BaseException as exc:  # reported by the main thread
            problems.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for day in range(DAYS, DAYS + 8):
            store.append(
                [
                    make_bar(i, open_ms=MONDAY_MS + day * DAY_MS + i * MINUTE_MS)
                    for i in range(PER_DAY)
                ]
            )
            store.append(
                [make_bar(5, open_ms=MONDAY_MS + day * DAY_MS + 5 * MINUTE_MS, shift=0.01)]
            )
            store.flush()
    finally:
        stop.set()
        thread.join()
    try:
        assert problems == []
        assert sizes
        final = list(store.bars("EURUSD", Timeframe.M1))
        assert len(final) == (DAYS + 8) * PER_DAY
        assert sum(1 for b in final if b.rev == 1) == 8
    finally:
        store.close()
