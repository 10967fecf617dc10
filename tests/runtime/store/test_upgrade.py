"""Upgrading a store written before manifests: the manifest is inferred from the bars and every
bar verified against it, or the upgrade is refused saying why (ambiguous, contradicting)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fxconnector.core.time_geom import DAY_MS, HOUR_MS, MINUTE_MS, Timeframe
from fxconnector.runtime.store.factory import open_store
from fxconnector.runtime.store.manifest import MANIFEST_NAME
from fxconnector.runtime.store.port import FinalStore
from fxconnector.runtime.store.upgrade import (
    Settings,
    UpgradeRefused,
    UpgradeReport,
    infer_manifest,
)
from tests.conftest import NOW_MS, calendar_profile
from tests.runtime.store.test_audit import replay_into
from tests.runtime.store.test_store_suite import MONDAY_MS, make_bar


@pytest.fixture(scope="module")
def replayed(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A legacy store: two real replays under always_open, its manifest taken away."""
    root = replay_into(shared_data, tmp_path_factory.mktemp("legacy") / "ssot")
    (root / MANIFEST_NAME).unlink()
    return root


@pytest.fixture
def legacy(replayed: Path, tmp_path: Path) -> Iterator[FinalStore]:
    store = open_store("jsonl", Path(shutil.copytree(replayed, tmp_path / "ssot")))
    store.open()
    yield store
    store.close()


@pytest.fixture
def weekday_1m(tmp_path: Path) -> Iterator[FinalStore]:
    """A legacy store of 1m bars on a Monday morning: every built-in calendar fits them."""
    store = open_store("jsonl", tmp_path / "ssot")
    store.open()
    store.append([make_bar(i, open_ms=MONDAY_MS + 10 * HOUR_MS + i * MINUTE_MS) for i in range(60)])
    yield store
    store.close()


def infer(store: FinalStore, tmp_path: Path, **settings: object) -> UpgradeReport:
    return infer_manifest(
        store,
        tmp_path / "ssot",
        "jsonl",
        Settings(**settings),  # type: ignore[arg-type]
        now_ms=NOW_MS,
        load=calendar_profile,
    )


def test_a_replayed_store_is_verified_on_the_calendar_it_names(
    legacy: FinalStore, tmp_path: Path
) -> None:
    # 4h/1d on 00:00 UTC rule fx_ny out; always_open and utc_00 share that grid, and these
    # bars sit in time both call open (after the New Year closures): the bars cannot tell.
    with pytest.raises(UpgradeRefused, match=r"fit several calendars \(always_open, utc_00\)"):
        infer(legacy, tmp_path)
    report = infer(legacy, tmp_path, calendar="always_open")
    made = report.manifest
    assert made.calendar == "always_open"
    assert made.timeframes == tuple(
        Timeframe(tf) for tf in ("1m", "5m", "15m", "30m", "1h", "4h", "1d")
    )
    assert made.symbols == ("EURUSD", "USDJPY")
    assert (made.volume, made.price, made.open_mode) == ("ticks", "bid", "first_tick")
    assert (made.origin, made.store_kind) == ("upgrade", "jsonl")
    assert report.bars_checked == sum(len(list(legacy.bars(*key))) for key in legacy.series())
    assert report.how == {
        "calendar": "verified",
        "timeframes": "read",
        "volume": "inferred",
        "price": "assumed",
        "open_mode": "assumed",
    }


def test_weekend_bars_single_out_the_calendar_open_then(
    weekday_1m: FinalStore, tmp_path: Path
) -> None:
    saturday = MONDAY_MS - 2 * DAY_MS + 12 * HOUR_MS
    weekday_1m.append([make_bar(tf=Timeframe.D1, open_ms=MONDAY_MS), make_bar(open_ms=saturday)])
    report = infer(weekday_1m, tmp_path)
    assert (report.manifest.calendar, report.how["calendar"]) == ("always_open", "inferred")
    assert report.manifest.timeframes == (Timeframe.M1, Timeframe.D1)


def test_a_calendar_the_bars_contradict_is_refused(legacy: FinalStore, tmp_path: Path) -> None:
    with pytest.raises(
        UpgradeRefused,
        match=r"contradicts calendar fx_ny: EURUSD 1d bar at 2020-01-01T00:00:00Z is not on its "
        r"grid \(2 such 1d bars\); profiles that fit every bar: always_open, utc_00",
    ):
        infer(legacy, tmp_path, calendar="fx_ny")


def test_bars_every_calendar_fits_are_ambiguous_until_one_is_named(
    weekday_1m: FinalStore, tmp_path: Path
) -> None:
    with pytest.raises(
        UpgradeRefused,
        match=r"its bars fit several calendars \(always_open, fx_ny, utc_00\); say which one "
        "with --calendar NAME",
    ):
        infer(weekday_1m, tmp_path)
    report = infer(weekday_1m, tmp_path, calendar="fx_ny")
    assert (report.manifest.calendar, report.how["calendar"]) == ("fx_ny", "verified")
    assert report.manifest.timeframes == (Timeframe.M1,)


def test_timeframes_may_grow_but_not_leave_out_stored_ones(
    weekday_1m: FinalStore, tmp_path: Path
) -> None:
    grown = infer(weekday_1m, tmp_path, calendar="fx_ny", timeframes=(Timeframe.M1, Timeframe.H4))
    assert grown.manifest.timeframes == (Timeframe.M1, Timeframe.H4)
    with pytest.raises(UpgradeRefused, match="--timeframes leaves out 1m"):
        infer(weekday_1m, tmp_path, calendar="fx_ny", timeframes=(Timeframe.H4,))


def test_a_bar_off_every_grid_fits_no_calendar(tmp_path: Path) -> None:
    store = open_store("jsonl", tmp_path / "ssot")
    store.open()
    try:
        store.append([make_bar(tf=Timeframe.H1, open_ms=MONDAY_MS + 30 * MINUTE_MS)])
        with pytest.raises(
            UpgradeRefused, match="fits no calendar profile: always_open: EURUSD 1h"
        ):
            infer(store, tmp_path)
    finally:
        store.close()


def test_volume_ticks_is_verified_against_tick_counts(tmp_path: Path) -> None:
    store = open_store("jsonl", tmp_path / "ssot")
    store.open()
    try:
        store.append([make_bar(i, volume=2.5 + i) for i in range(3)])
        assert infer(store, tmp_path, calendar="fx_ny").manifest.volume == "size"
        with pytest.raises(UpgradeRefused, match="some 1m bars have volume != tick_count"):
            infer(store, tmp_path, calendar="fx_ny", volume="ticks")
    finally:
        store.close()


def test_an_empty_store_has_nothing_to_infer(tmp_path: Path) -> None:
    store = open_store("jsonl", tmp_path / "ssot")
    store.open()
    try:
        with pytest.raises(UpgradeRefused, match="holds no bars"):
            infer(store, tmp_path)
    finally:
        store.close()
