"""Stores know what they are: the manifest is written at creation, settled on open, and guards
every append; a store written before manifests is refused with the command that upgrades it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Final

import msgspec
import pytest

from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.errors import ConfigError, ContractViolation, StoreCorrupt, StoreError
from fxconnector.core.time_geom import HOUR_MS, Timeframe
from fxconnector.runtime.store import manifest
from fxconnector.runtime.store.factory import StoreKind, holds_data, open_store, preflight
from fxconnector.runtime.store.manifest import (
    MANIFEST_NAME,
    LegacyStore,
    StoreIdentity,
    StoreManifest,
    read_manifest,
)
from fxconnector.runtime.store.port import AppendOutcome, FinalStore
from tests.runtime.store.test_store_suite import DAY_OPEN_MS, MONDAY_MS, make_bar

KINDS: Final[tuple[StoreKind, ...]] = ("jsonl", "sqlite")
ALL_TFS: Final = (Timeframe.M1, Timeframe.M5, Timeframe.H1, Timeframe.H4, Timeframe.D1)


def want(
    profile: CalendarProfile,
    kind: StoreKind = "jsonl",
    *,
    symbols: tuple[str, ...] = ("EURUSD",),
    price: str = "bid",
) -> StoreManifest:
    return manifest.wanted(
        store_kind=kind,
        calendar=profile.name,
        profile=profile,
        timeframes=ALL_TFS,
        price=price,
        open_mode="first_tick",
        volume="ticks",
        symbols=symbols,
        origin="run",
    )


def opened(root: Path, identity: StoreIdentity | None, kind: StoreKind = "jsonl") -> FinalStore:
    store = open_store(kind, root, identity=identity)
    store.open()
    return store


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_store_writes_its_manifest_at_creation(
    kind: StoreKind, tmp_path: Path, always_open: CalendarProfile
) -> None:
    root = tmp_path / "ssot"
    wanted = want(always_open, kind)
    store = open_store(kind, root, identity=StoreIdentity(wanted, always_open))
    store.open()
    store.close()
    on_disk = json.loads((root / MANIFEST_NAME).read_text())
    assert on_disk == {
        "format_version": 1,
        "store_kind": kind,
        "calendar": "always_open",
        "calendar_digest": wanted.calendar_digest,
        "trading_day": "UTC 00:00",
        "timeframes": ["1m", "5m", "1h", "4h", "1d"],
        "price": "bid",
        "open_mode": "first_tick",
        "volume": "ticks",
        "symbols": ["EURUSD"],
        "created_by": manifest.CREATED_BY,
        "origin": "run",
    }
    assert wanted.calendar_digest.startswith("sha256:")
    assert read_manifest(root) == wanted


def test_the_digest_follows_the_rules_and_the_trading_day_the_grid(
    fx_ny: CalendarProfile, utc_00: CalendarProfile, always_open: CalendarProfile
) -> None:
    digests = {want(p).calendar_digest for p in (fx_ny, utc_00, always_open)}
    assert len(digests) == 3
    assert want(fx_ny).trading_day == "America/New_York 17:00"
    assert want(utc_00).trading_day == want(always_open).trading_day == "UTC 00:00"


def test_unknown_keys_in_a_manifest_are_refused(tmp_path: Path, fx_ny: CalendarProfile) -> None:
    root = tmp_path / "ssot"
    manifest.write_manifest(root, want(fx_ny))
    raw = json.loads((root / MANIFEST_NAME).read_text())
    (root / MANIFEST_NAME).write_text(json.dumps({**raw, "grid": "mine"}))
    with pytest.raises(StoreCorrupt, match=r"manifest.json: not a store manifest.*grid"):
        read_manifest(root)
    store = open_store("jsonl", root, identity=StoreIdentity(want(fx_ny), fx_ny))
    with pytest.raises(StoreCorrupt):
        store.open()
    # The refused open released the writer lock: a second attempt gets the same answer.
    second = open_store("jsonl", root, identity=StoreIdentity(want(fx_ny), fx_ny))
    with pytest.raises(StoreCorrupt):
        second.open()


def test_a_manifest_from_a_newer_fxconnector_is_refused(
    tmp_path: Path, fx_ny: CalendarProfile
) -> None:
    root = tmp_path / "ssot"
    manifest.write_manifest(root, msgspec.structs.replace(want(fx_ny), format_version=2))
    with pytest.raises(StoreError, match="store format 2 is newer than this fxconnector reads"):
        read_manifest(root)


@pytest.mark.parametrize("kind", KINDS)
def test_the_store_refuses_a_bar_off_its_grid_at_append(
    kind: StoreKind, tmp_path: Path, fx_ny: CalendarProfile
) -> None:
    root = tmp_path / "ssot"
    store = open_store(kind, root, identity=StoreIdentity(want(fx_ny, kind), fx_ny))
    store.open()
    try:
        good_day = make_bar(tf=Timeframe.D1, open_ms=DAY_OPEN_MS)  # 22:00Z: fx_ny's winter day
        utc_day = make_bar(tf=Timeframe.D1, open_ms=MONDAY_MS)  # 00:00Z: another calendar's
        with pytest.raises(
            ContractViolation,
            match=r"EURUSD 1d 1549238400000 \(2019-02-04T00:00:00Z\): not a 1d bucket open on its "
            r"calendar fx_ny \(that bucket opens at 2019-02-03T22:00:00Z\)",
        ):
            store.append([good_day, utc_day])
        assert list(store.bars("EURUSD", Timeframe.D1)) == []  # nothing of the batch is written
        with pytest.raises(ContractViolation, match="not a 4h bucket open"):
            store.append([make_bar(tf=Timeframe.H4, open_ms=MONDAY_MS)])
        with pytest.raises(ContractViolation, match="timeframe 15m is not in its manifest"):
            store.append([make_bar(tf=Timeframe.M15)])
        with pytest.raises(ContractViolation, match="symbol GBPUSD is not in its manifest"):
            store.append([make_bar(symbol="GBPUSD")])
        (result,) = store.append([good_day])
        assert result.outcome is AppendOutcome.NEW
        assert store.append([make_bar(tf=Timeframe.H4, open_ms=DAY_OPEN_MS + 4 * HOUR_MS)])
    finally:
        store.close()


def test_a_store_opened_bare_still_guards_its_grid(tmp_path: Path, fx_ny: CalendarProfile) -> None:
    root = tmp_path / "ssot"
    first = open_store("jsonl", root, identity=StoreIdentity(want(fx_ny), fx_ny))
    first.open()
    first.close()
    bare = open_store("jsonl", root)  # no identity: the manifest on disk decides
    bare.open()
    try:
        with pytest.raises(ContractViolation, match="calendar fx_ny"):
            bare.append([make_bar(tf=Timeframe.D1, open_ms=MONDAY_MS)])
    finally:
        bare.close()


@pytest.mark.parametrize("kind", KINDS)
def test_settings_that_differ_are_refused_naming_both_and_the_way_out(
    kind: StoreKind, tmp_path: Path, fx_ny: CalendarProfile, always_open: CalendarProfile
) -> None:
    root = tmp_path / "ssot"
    opened(root, StoreIdentity(want(always_open, kind), always_open), kind).close()
    before = (root / MANIFEST_NAME).read_bytes()
    other = want(fx_ny, kind, price="mid")
    for attempt in (
        lambda: preflight(root, other),
        lambda: open_store(kind, root, identity=StoreIdentity(other, fx_ny)).open(),
    ):
        with pytest.raises(ConfigError) as caught:
            attempt()
        text = str(caught.value)
        assert "calendar.profile is always_open in the store, fx_ny in the config" in text
        assert "bars.price is bid in the store, mid in the config" in text
        assert "another --workdir or [store] path" in text
    assert (root / MANIFEST_NAME).read_bytes() == before
    # The refused open released the lock: the right settings open it.
    opened(root, StoreIdentity(want(always_open, kind), always_open), kind).close()


def test_another_store_kind_is_pointed_at_migrate(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    root = tmp_path / "ssot"
    manifest.write_manifest(root, want(always_open, "jsonl"))
    with pytest.raises(
        ConfigError, match=r"store.kind is jsonl in the store, sqlite in the config"
    ):
        preflight(root, want(always_open, "sqlite"))
    with pytest.raises(ConfigError, match=r"--to NEW_DIR --to-kind sqlite"):
        preflight(root, want(always_open, "sqlite"))


def test_new_symbols_are_added_to_the_manifest(tmp_path: Path, fx_ny: CalendarProfile) -> None:
    root = tmp_path / "ssot"
    opened(root, StoreIdentity(want(fx_ny, symbols=("EURUSD", "USDJPY")), fx_ny)).close()
    store = open_store(
        "jsonl", root, identity=StoreIdentity(want(fx_ny, symbols=("GBPUSD",)), fx_ny)
    )
    store.open()
    try:
        assert store.append([make_bar(symbol="GBPUSD")])
    finally:
        store.close()
    found = read_manifest(root)
    assert found is not None
    assert found.symbols == ("EURUSD", "GBPUSD", "USDJPY")  # none is ever dropped


def test_changed_calendar_rules_on_the_same_grid_are_recorded(
    tmp_path: Path, fx_ny: CalendarProfile, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "ssot"
    old = msgspec.structs.replace(want(fx_ny), calendar_digest="sha256:" + "0" * 64)
    manifest.write_manifest(root, old)
    with caplog.at_level(logging.WARNING, logger="fxconnector.runtime.store.manifest"):
        opened(root, StoreIdentity(want(fx_ny), fx_ny)).close()
    found = read_manifest(root)
    assert found is not None
    assert found.calendar_digest == want(fx_ny).calendar_digest
    assert "calendar fx_ny rules changed" in caplog.text
    moved = msgspec.structs.replace(want(fx_ny), trading_day="America/New_York 16:00")
    manifest.write_manifest(root, moved)
    with pytest.raises(ConfigError, match="the calendar's trading-day start is America/New_York"):
        preflight(root, want(fx_ny))


@pytest.mark.parametrize("kind", KINDS)
def test_a_store_with_bars_and_no_manifest_is_refused_with_the_upgrade_command(
    kind: StoreKind, tmp_path: Path, fx_ny: CalendarProfile
) -> None:
    root = tmp_path / "ssot"
    bare = open_store(kind, root)  # how stores were written before manifests
    bare.open()
    bare.append([make_bar(i) for i in range(3)])
    bare.close()
    assert read_manifest(root) is None
    assert holds_data(root)
    expected = f"run `fxconnector migrate --store {root} --write-manifest`"
    with pytest.raises(LegacyStore, match=expected.replace("`", ".")):
        preflight(root, want(fx_ny, kind))
    store = open_store(kind, root, identity=StoreIdentity(want(fx_ny, kind), fx_ny))
    with pytest.raises(LegacyStore):
        store.open()
    assert read_manifest(root) is None  # refused: nothing written


def test_an_empty_folder_holds_no_data(tmp_path: Path) -> None:
    assert not holds_data(tmp_path / "nowhere")
    (tmp_path / "backup").mkdir()
    (tmp_path / "EURUSD" / "1m").mkdir(parents=True)  # folders alone hold no bar
    assert not holds_data(tmp_path)
    (tmp_path / "EURUSD" / "fetched.jsonl").write_text('{"from_ms":0,"to_ms":60000}\n')
    assert holds_data(tmp_path)
