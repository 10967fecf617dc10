"""Migration between the stores: JSONL -> SQLite -> JSONL gives back the same bytes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

import msgspec
import pytest

from fxconnector.core.builders.derive import derive
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.time_geom import HOUR_MS, RANGE_END_MS, Timeframe
from fxconnector.core.utils import json_codec
from fxconnector.runtime.store.factory import StoreKind, open_store
from fxconnector.runtime.store.migrate import DestinationNotEmpty, MigrationReport, migrate
from fxconnector.runtime.store.port import FinalStore
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.runtime.store.test_audit import DERIVED, JAN_2, replay_into
from tests.runtime.store.test_store_suite import make_bar

#: A symbol known only by its fetched coverage (no bar): it must travel too.
QUIET_SYMBOL: Final = "GBPUSD"
QUIET_FROM: Final = JAN_2
QUIET_TO: Final = JAN_2 + HOUR_MS


@pytest.fixture(scope="module")
def source_store(
    shared_data: Path, tmp_path_factory: pytest.TempPathFactory, always_open: CalendarProfile
) -> Path:
    """The replayed store plus revisions (a repaired 1m, re-derived above) and a quiet symbol."""
    root = replay_into(shared_data, tmp_path_factory.mktemp("source") / "ssot")
    store = JsonlStore(root)
    store.open()
    calendar = always_open.for_symbol("EURUSD")
    for nth, reason in ((3, "broker correction"), (40, "repair")):
        minute = list(store.bars("EURUSD", Timeframe.M1, JAN_2))[nth]
        more = msgspec.structs.replace(
            minute.event(), volume=minute.tick_count + 1, tick_count=minute.tick_count + 1
        )
        store.append([more], reason)
        finals = [b.event() for b in store.bars("EURUSD", Timeframe.M1)]
        for tf in DERIVED:
            built = [b for b in derive(finals, tf, calendar) if b.open_ms <= minute.open_ms][-1]
            store.append([built], "rederived from revised 1m")
    store.mark_fetched(QUIET_SYMBOL, QUIET_FROM, QUIET_TO)
    store.close()
    return root


def opened(kind: StoreKind, root: Path) -> FinalStore:
    store = open_store(kind, root)
    store.open()
    return store


def run(
    source: tuple[StoreKind, Path], destination: tuple[StoreKind, Path], profile: CalendarProfile
) -> MigrationReport:
    mine, theirs = opened(*source), opened(*destination)
    try:
        return migrate(mine, theirs, profile)
    finally:
        theirs.close()
        mine.close()


def day_files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes() for path in sorted(root.glob("*/*/*.jsonl"))
    }


def test_jsonl_to_sqlite_and_back_gives_the_same_bytes(
    source_store: Path, tmp_path: Path, always_open: CalendarProfile
) -> None:
    there = run(("jsonl", source_store), ("sqlite", tmp_path / "sqlite"), always_open)
    back = run(("sqlite", tmp_path / "sqlite"), ("jsonl", tmp_path / "back"), always_open)
    for report in (there, back):
        assert report.verified, report.first_differences
        assert report.differences == 0
        # Two 1m revised; 5m, 15m, 30m: two buckets each; 1h, 4h, 1d: one bucket, twice.
        assert (report.series, report.keys, report.revised) == (14, 534, 11)
        assert report.records == 534 + 14
        assert report.fetched == 3  # EURUSD, USDJPY, GBPUSD: one merged interval each
        assert report.destination_audit is not None
        assert report.destination_audit.ok
    # Every day file, revisions and reasons included, byte for byte.
    original, returned = day_files(source_store), day_files(tmp_path / "back")
    assert len(original) == 7 * 2 + 7  # EURUSD on two UTC days, USDJPY on one
    assert returned == original
    assert b'"rev":1,"reason":"broker correction"' in original["EURUSD/1m/2020-01-02.jsonl"]
    copy = opened("jsonl", tmp_path / "back")
    first = opened("jsonl", source_store)
    try:
        for symbol in ("EURUSD", "USDJPY", QUIET_SYMBOL):
            assert copy.fetched_intervals(symbol, 0, RANGE_END_MS) == first.fetched_intervals(
                symbol, 0, RANGE_END_MS
            )
        assert copy.fetched_intervals(QUIET_SYMBOL, 0, RANGE_END_MS) == [(QUIET_FROM, QUIET_TO)]
        revised = [b for b in first.bars("EURUSD", Timeframe.H1) if b.rev > 0]
        assert len(revised) == 1
        chain = copy.revisions("EURUSD", Timeframe.H1, revised[0].open_ms)
        assert [(b.rev, b.reason) for b in chain] == [
            (0, ""),
            (1, "rederived from revised 1m"),
            (2, "rederived from revised 1m"),
        ]
    finally:
        copy.close()
        first.close()


def test_sqlite_holds_the_same_latest_bars(
    source_store: Path, tmp_path: Path, always_open: CalendarProfile
) -> None:
    run(("jsonl", source_store), ("sqlite", tmp_path / "sqlite"), always_open)
    mine, theirs = opened("jsonl", source_store), opened("sqlite", tmp_path / "sqlite")
    try:
        assert theirs.series() == mine.series()
        for symbol, tf in mine.series():
            assert json_codec.encode_lines(list(theirs.bars(symbol, tf))) == (
                json_codec.encode_lines(list(mine.bars(symbol, tf)))
            )
    finally:
        theirs.close()
        mine.close()


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_a_non_empty_destination_is_refused_untouched(
    kind: StoreKind, source_store: Path, tmp_path: Path, always_open: CalendarProfile
) -> None:
    destination = opened(kind, tmp_path / "dest")
    destination.append([make_bar(0)])
    destination.close()
    before = {p: p.read_bytes() for p in (tmp_path / "dest").rglob("*") if p.is_file()}
    with pytest.raises(DestinationNotEmpty, match=r"not empty \(1 series"):
        run(("jsonl", source_store), (kind, tmp_path / "dest"), always_open)
    after = {p: p.read_bytes() for p in (tmp_path / "dest").rglob("*") if p.is_file()}
    assert {p: b for p, b in after.items() if p.name != ".writer.lock"} == {
        p: b for p, b in before.items() if p.name != ".writer.lock"
    }


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_coverage_alone_makes_a_destination_non_empty(
    kind: StoreKind, source_store: Path, tmp_path: Path, always_open: CalendarProfile
) -> None:
    destination = opened(kind, tmp_path / "dest")
    destination.mark_fetched(QUIET_SYMBOL, QUIET_FROM, QUIET_TO)
    destination.close()
    with pytest.raises(DestinationNotEmpty, match=QUIET_SYMBOL):
        run(("jsonl", source_store), (kind, tmp_path / "dest"), always_open)


def test_progress_runs_to_its_total(
    source_store: Path, tmp_path: Path, always_open: CalendarProfile
) -> None:
    calls: list[tuple[int, int]] = []
    mine, theirs = opened("jsonl", source_store), opened("sqlite", tmp_path / "sqlite")
    try:
        migrate(mine, theirs, always_open, progress=lambda done, total: calls.append((done, total)))
    finally:
        theirs.close()
        mine.close()
    assert len(calls) == 2 * 14 + 2  # each series copied and verified, coverage, audits
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert calls[-1] == (2 * 534 + 2, 2 * 534 + 2)


class _LosesCoverage(JsonlStore):
    """A destination that silently drops fetched intervals: verification must notice."""

    def mark_fetched(self, symbol: str, from_ms: int, to_ms: int) -> None:
        return None


def test_verification_catches_a_copy_that_lost_something(
    source_store: Path, tmp_path: Path, always_open: CalendarProfile
) -> None:
    mine, theirs = opened("jsonl", source_store), _LosesCoverage(tmp_path / "lossy")
    theirs.open()
    try:
        report = migrate(mine, theirs, always_open)
    finally:
        theirs.close()
        mine.close()
    assert not report.verified
    assert report.differences == 3
    assert "GBPUSD fetched intervals: 1 in source, 0 copied" in report.first_differences


def test_the_source_store_is_left_as_it_was(
    source_store: Path, tmp_path: Path, always_open: CalendarProfile
) -> None:
    copy = Path(shutil.copytree(source_store, tmp_path / "source"))
    before = day_files(copy)
    run(("jsonl", copy), ("sqlite", tmp_path / "sqlite"), always_open)
    assert day_files(copy) == before
