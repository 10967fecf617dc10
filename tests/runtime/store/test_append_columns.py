"""`append_columns`, the bulk load of a new series' days (a replay into a symbol the store
has never held), on both stores: what it stores is what `append` stores, bar for bar (and for
JSONL byte for byte); it checks every bar as `append` does, a column at a time, and a refused
load writes nothing."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from fxconnector.core.builders.vector import BarColumns
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.errors import ContractViolation
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import DAY_MS, Timeframe
from fxconnector.runtime.store.factory import StoreKind, open_store
from fxconnector.runtime.store.manifest import StoreIdentity
from tests.runtime.store.test_manifest import want
from tests.runtime.store.test_store_suite import DAY_OPEN_MS, KINDS, make_bar, open_kind

#: 1m bars over three UTC days: the last hours of Sunday, Monday, the first hours of Tuesday.
BARS = [make_bar(i, open_ms=DAY_OPEN_MS + i * 60_000) for i in range(120 + 1440 + 90)]


def _columns(bars: list[OhlcvEvent]) -> BarColumns:
    return BarColumns.from_events(bars)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*.jsonl"))
        if p.is_file()
    }


@pytest.mark.parametrize("kind", KINDS)
def test_it_stores_what_append_stores(kind: StoreKind, tmp_path: Path) -> None:
    bulk = open_kind(kind, tmp_path / "bulk")
    one_by_one = open_kind(kind, tmp_path / "append")
    stored = bulk.append_columns("EURUSD", Timeframe.M1, _columns(BARS), Source.HISTORY)
    results = one_by_one.append(BARS)
    assert stored == [r.stored for r in results]
    assert all(bar.rev == 0 and bar.reason == "" for bar in stored)
    assert list(bulk.bars("EURUSD", Timeframe.M1)) == stored  # read back before a reopen
    for store in (bulk, one_by_one):
        store.close()
    if kind == "jsonl":
        assert _files(tmp_path / "bulk") == _files(tmp_path / "append")
        assert len(_files(tmp_path / "bulk")) == 3  # one file per UTC day
    reopened = open_kind(kind, tmp_path / "bulk")
    try:
        assert list(reopened.bars("EURUSD", Timeframe.M1)) == stored
        assert reopened.last_open_ms("EURUSD", Timeframe.M1) == BARS[-1].open_ms
        # After a bulk load, the series takes bars one by one as before (a revision included).
        changed = msgspec.structs.replace(BARS[-1], close=BARS[-1].high)
        assert reopened.append([changed])[0].stored.rev == 1
    finally:
        reopened.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_day_the_series_already_holds_refuses_the_whole_load(
    kind: StoreKind, tmp_path: Path
) -> None:
    store = open_kind(kind, tmp_path / "s")
    try:
        monday_noon = BARS[120 + 720]
        store.append([monday_noon])
        with pytest.raises(
            ContractViolation, match=r"already holds a bar on the UTC day 2019-02-04"
        ):
            store.append_columns("EURUSD", Timeframe.M1, _columns(BARS), Source.HISTORY)
        assert list(store.bars("EURUSD", Timeframe.M1)) == [store.latest(
            "EURUSD", Timeframe.M1, monday_noon.open_ms
        )]  # fmt: skip
        # Another series, or days this one lacks, load.
        tuesday = [b for b in BARS if b.open_ms // DAY_MS > monday_noon.open_ms // DAY_MS]
        assert store.append_columns("EURUSD", Timeframe.M1, _columns(tuesday), Source.HISTORY)
        assert store.append_columns("GBPUSD", Timeframe.M1, _columns(
            [msgspec.structs.replace(b, symbol="GBPUSD") for b in BARS]
        ), Source.HISTORY)  # fmt: skip
    finally:
        store.close()


@pytest.mark.parametrize(
    ("change", "index", "why"),
    [
        ({"high": float("nan")}, 5, "OHLC order broken"),
        ({"low": 2.0}, 7, "OHLC order broken"),
        ({"low": 0.0, "open": 0.0}, 9, "OHLC order broken"),
        ({"volume": -1}, 11, "volume -1"),
        ({"tick_count": -3}, 13, "tick_count -3"),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_bar_is_named_and_nothing_is_written(
    kind: StoreKind, change: dict[str, float], index: int, why: str, tmp_path: Path
) -> None:
    bars = list(BARS)
    bars[index] = msgspec.structs.replace(bars[index], **change)
    store = open_kind(kind, tmp_path / "s")
    try:
        with pytest.raises(ContractViolation, match=rf"bar #{index} \(EURUSD 1m .*{why}"):
            store.append_columns("EURUSD", Timeframe.M1, _columns(bars), Source.HISTORY)
        assert list(store.bars("EURUSD", Timeframe.M1)) == []
        assert store.series() == []
    finally:
        store.close()
    assert _files(tmp_path / "s") == {}


@pytest.mark.parametrize("kind", KINDS)
def test_columns_out_of_order_or_a_preview_source_are_refused(
    kind: StoreKind, tmp_path: Path
) -> None:
    store = open_kind(kind, tmp_path / "s")
    try:
        swapped = [*BARS[:3], BARS[4], BARS[3], *BARS[5:]]
        with pytest.raises(ContractViolation, match=r"bar #4 .*columns ascend"):
            store.append_columns("EURUSD", Timeframe.M1, _columns(swapped), Source.HISTORY)
        with pytest.raises(ContractViolation, match="not a final source"):
            store.append_columns("EURUSD", Timeframe.M1, _columns(BARS), Source.STREAM)
        with pytest.raises(ContractViolation, match="does not match"):
            store.append_columns("eur/usd", Timeframe.M1, _columns(BARS), Source.HISTORY)
        assert store.series() == []
    finally:
        store.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_bar_off_the_manifest_grid_is_refused(
    kind: StoreKind, tmp_path: Path, fx_ny: CalendarProfile
) -> None:
    store = open_store(kind, tmp_path / "s", identity=StoreIdentity(want(fx_ny, kind), fx_ny))
    store.open()
    try:
        days = [make_bar(tf=Timeframe.D1, open_ms=DAY_OPEN_MS + i * DAY_MS) for i in range(3)]
        off = [*days[:2], make_bar(tf=Timeframe.D1, open_ms=DAY_OPEN_MS + 2 * DAY_MS + 3600_000)]
        with pytest.raises(ContractViolation, match=r"not a 1d bucket open"):
            store.append_columns("EURUSD", Timeframe.D1, _columns(off), Source.DERIVED)
        assert store.series() == []
        stored = store.append_columns("EURUSD", Timeframe.D1, _columns(days), Source.DERIVED)
        assert [b.open_ms for b in stored] == [d.open_ms for d in days]
        assert np.all(np.diff([b.open_ms for b in stored]) == DAY_MS)
    finally:
        store.close()
