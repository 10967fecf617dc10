"""The store audit: silent on a clean replayed store, and naming each kind of damage it checks.

The clean store is a replay of real ticks (HistData EURUSD 2020-01-01, TrueFX USDJPY
2013-01-01) under the always_open calendar; each damage is written by hand, as a crash, a bad
copy or a buggy writer would leave it.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec
import numpy as np
import pytest

from fxconnector.app.main import main
from fxconnector.core.builders.derive import derive
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.coverage import classify, count
from fxconnector.core.errors import StoreLocked
from fxconnector.core.model.bar import Source, StoredFinal
from fxconnector.core.time_geom import DAY_MS, HOUR_MS, MINUTE_MS, Timeframe
from fxconnector.core.utils import json_codec
from fxconnector.runtime.store.audit import AuditReport, AuditRule, audit
from fxconnector.runtime.store.audit_sources import JsonlScan, StoreSource
from fxconnector.runtime.store.factory import StoreKind, open_store
from fxconnector.runtime.store.lock import WriterLock
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from fxconnector.runtime.store.ssot_sqlite import DB_NAME
from tests.runtime.store.test_store_suite import make_bar

JAN_1: Final = 1_577_836_800_000  # 2020-01-01T00:00:00Z
JAN_2: Final = JAN_1 + DAY_MS
#: 1m finals per symbol and UTC day in the replayed store (the ticks run 22:00Z to 04:01Z).
CLEAN_FINALS: Final = {("EURUSD", "2020-01-01"): 120, ("EURUSD", "2020-01-02"): 241}
CLEAN_KEYS: Final = {"1m": 361, "5m": 73, "15m": 25, "30m": 13, "1h": 7, "4h": 3, "1d": 2}
#: The derived timeframes a replay stores by default.
DERIVED: Final = tuple(Timeframe(tf) for tf in CLEAN_KEYS if tf != "1m")


def replay_into(shared_data: Path, root: Path, kind: StoreKind = "jsonl") -> Path:
    """Replay the two small real tick files into a store at `root` (always_open calendar)."""
    for path, symbol in (
        (shared_data / "histdata" / "quote_tick_data.csv", "EURUSD"),
        (shared_data / "truefx" / "USDJPY_ticks.csv", "USDJPY"),
    ):
        argv = ["replay", str(path), "--symbol", symbol, "--calendar", "always_open"]
        assert main([*argv, "--store", str(root), "--store-kind", kind]) == 0
    return root


@pytest.fixture(scope="module")
def clean_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return replay_into(shared_data, tmp_path_factory.mktemp("clean") / "ssot")


@pytest.fixture
def store(clean_store: Path, tmp_path: Path) -> Path:
    """A private copy of the clean store, to damage."""
    return Path(shutil.copytree(clean_store, tmp_path / "ssot"))


def scan(
    root: Path,
    profile: CalendarProfile,
    *,
    symbol: str | None = None,
    from_ms: int | None = None,
    to_ms: int | None = None,
    until_ms: int | None = None,
    timeframes: list[Timeframe] | None = None,
) -> AuditReport:
    source = JsonlScan(root)
    source.open()
    try:
        return audit(
            source,
            profile,
            symbol=symbol,
            from_ms=from_ms,
            to_ms=to_ms,
            until_ms=until_ms,
            timeframes=timeframes,
        )
    finally:
        source.close()


def through_port(root: Path, kind: StoreKind, profile: CalendarProfile) -> AuditReport:
    store = open_store(kind, root)
    store.open()
    try:
        return audit(StoreSource(store), profile)
    finally:
        store.close()


def lines_of(path: Path) -> list[StoredFinal]:
    return msgspec.json.Decoder(StoredFinal).decode_lines(path.read_bytes())


def append_line(path: Path, bar: StoredFinal) -> None:
    with path.open("ab") as handle:
        handle.write(json_codec.encode(bar) + b"\n")


def rules_of(report: AuditReport) -> dict[str, int]:
    return report.problem_counts


# -- a clean store ---------------------------------------------------------------------------


def test_a_clean_replayed_store_has_no_problem(
    clean_store: Path, always_open: CalendarProfile
) -> None:
    report = scan(clean_store, always_open)
    assert report.ok
    assert report.problem_counts == {}
    assert report.problems == []
    eurusd = {s.tf: s.keys for s in report.series if s.symbol == "EURUSD"}
    assert eurusd == CLEAN_KEYS
    assert all(s.records == s.keys and s.revised == 0 for s in report.series)
    finals = {(d.symbol, d.date): d.final for d in report.coverage}
    assert {k: v for k, v in finals.items() if k[0] == "EURUSD"} == CLEAN_FINALS
    assert finals[("USDJPY", "2013-01-01")] == 34
    assert report.missing_minutes == 0


def test_coverage_rows_are_classify_per_utc_day(
    clean_store: Path, always_open: CalendarProfile, fx_ny: CalendarProfile
) -> None:
    store = JsonlStore(clean_store)
    store.open()
    opens = np.asarray([b.open_ms for b in store.bars("EURUSD", Timeframe.M1)], dtype=np.int64)
    fetched = store.fetched_intervals("EURUSD", 0, 2 * JAN_2)
    store.close()
    for profile in (always_open, fx_ny):
        rows = [d for d in scan(clean_store, profile).coverage if d.symbol == "EURUSD"]
        assert [d.date for d in rows] == ["2020-01-01", "2020-01-02"]
        for row, day in zip(rows, (JAN_1, JAN_2), strict=True):
            tally = count(classify(day, day + DAY_MS, profile.default, opens, fetched))
            assert (row.final, row.quiet, row.missing, row.closed) == (
                tally.final,
                tally.quiet,
                tally.missing,
                tally.closed,
            )
    # fx_ny closes New Year's Day until 22:00Z: every minute before is closed, none missing.
    ny_first = next(d for d in scan(clean_store, fx_ny).coverage if d.date == "2020-01-01")
    assert (ny_first.closed, ny_first.final, ny_first.missing) == (1320, 120, 0)


def test_the_port_and_the_file_scan_agree_and_sqlite_too(
    clean_store: Path, shared_data: Path, tmp_path: Path, always_open: CalendarProfile
) -> None:
    by_scan = scan(clean_store, always_open)
    assert through_port(clean_store, "jsonl", always_open) == by_scan
    sqlite_root = replay_into(shared_data, tmp_path / "sqlite", "sqlite")
    assert through_port(sqlite_root, "sqlite", always_open) == by_scan


def test_a_range_and_a_symbol_narrow_the_audit(
    clean_store: Path, always_open: CalendarProfile
) -> None:
    report = scan(
        clean_store, always_open, symbol="EURUSD", from_ms=JAN_2, to_ms=JAN_2 + 2 * HOUR_MS
    )
    assert report.ok
    assert [(d.symbol, d.date, d.final, d.quiet) for d in report.coverage] == [
        ("EURUSD", "2020-01-02", 120, 0)
    ]
    keys = {s.tf: s.keys for s in report.series}
    assert keys == {"1m": 120, "5m": 24, "15m": 8, "30m": 4, "1h": 2, "4h": 1, "1d": 1}


def test_coverage_stops_at_until(clean_store: Path, always_open: CalendarProfile) -> None:
    report = scan(clean_store, always_open, symbol="EURUSD", until_ms=JAN_2 + 30 * MINUTE_MS)
    last = report.coverage[-1]
    assert (last.date, last.final + last.quiet + last.missing + last.closed) == ("2020-01-02", 30)


def test_missing_minutes_are_counted_but_break_no_invariant(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    store = JsonlStore(tmp_path / "ssot")
    store.open()
    store.append([make_bar(i, open_ms=JAN_1 + i * MINUTE_MS) for i in range(10)])
    store.mark_fetched("EURUSD", JAN_1 + 10 * MINUTE_MS, JAN_1 + 70 * MINUTE_MS)
    store.append([make_bar(100, open_ms=JAN_1 + 100 * MINUTE_MS)])  # 70..99: never fetched
    store.close()
    # A 1m-only store (derived completeness is tested on its own).
    report = scan(tmp_path / "ssot", always_open, timeframes=[])
    assert report.ok
    (day,) = report.coverage
    assert (day.final, day.quiet, day.missing, day.closed) == (11, 60, 30, 0)
    assert report.missing_minutes == 30


def test_coverage_starts_at_the_stores_first_minute(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    """A store whose history starts at 11:30 (the demo's three days back from a start at
    11:30) is not missing the 690 minutes before it, with or without an earlier --from; nor
    the minutes after its last one (a replay cut with --to), unless a --to asks for them."""
    start = JAN_1 + 690 * MINUTE_MS
    store = JsonlStore(tmp_path / "ssot")
    store.open()
    store.append([make_bar(i, open_ms=start + i * MINUTE_MS) for i in range(10)])
    store.mark_fetched("EURUSD", start, start + 20 * MINUTE_MS)
    store.close()
    for from_ms in (None, JAN_1 - DAY_MS, JAN_1):
        report = scan(tmp_path / "ssot", always_open, timeframes=[], from_ms=from_ms)
        assert report.ok
        (day,) = report.coverage
        assert (day.date, day.final, day.quiet, day.missing, day.closed) == (
            "2020-01-01",
            10,
            10,
            0,  # the store ends at 11:50: the rest of the day was never asked for
            0,
        ), from_ms
    # A --to past the store's last minute counts the minutes up to it as missing.
    report = scan(tmp_path / "ssot", always_open, timeframes=[], to_ms=JAN_2)
    (day,) = report.coverage
    assert (day.final, day.quiet, day.missing) == (10, 10, 1440 - 690 - 20)
    # A --from inside the store's range still starts where it says.
    report = scan(tmp_path / "ssot", always_open, timeframes=[], from_ms=start + 5 * MINUTE_MS)
    (day,) = report.coverage
    assert (day.final, day.quiet) == (5, 10)


# -- damage, one kind at a time ---------------------------------------------------------------


def test_an_unaligned_4h_line_is_reported(store: Path, always_open: CalendarProfile) -> None:
    day_file = store / "EURUSD" / "4h" / "2020-01-01.jsonl"
    (aligned,) = lines_of(day_file)
    shifted = aligned.open_ms + HOUR_MS  # 21:00Z: 4h buckets open at 20:00Z on this grid
    append_line(
        day_file,
        msgspec.structs.replace(
            aligned,
            open_ms=shifted,
            close_ms=shifted + 4 * HOUR_MS - 1,
            event_ts=shifted + 4 * HOUR_MS - 1,
        ),
    )
    report = scan(store, always_open)
    assert not report.ok
    assert rules_of(report) == {"bar.unaligned_open": 1}
    (problem,) = report.problems
    assert (problem.symbol, problem.tf, problem.open_ms, problem.rev) == (
        "EURUSD",
        "4h",
        shifted,
        0,
    )
    assert problem.open_iso == "2020-01-01T21:00:00Z"
    assert "opens at 1577908800000" in problem.message
    # The store itself does not know the grid: it opens, and its port shows the same problem.
    assert rules_of(through_port(store, "jsonl", always_open)) == {"bar.unaligned_open": 1}


def test_a_revision_chain_with_a_hole_is_reported(
    store: Path, always_open: CalendarProfile
) -> None:
    day_file = store / "EURUSD" / "1m" / "2020-01-02.jsonl"
    target = lines_of(day_file)[7]
    append_line(day_file, msgspec.structs.replace(target, rev=2, reason="repair"))
    ssot = JsonlStore(store)
    opened = ssot.open()  # the store opens, keeps the newest revision and reports the hole
    try:
        assert ssot.latest("EURUSD", Timeframe.M1, target.open_ms) == msgspec.structs.replace(
            target, rev=2, reason="repair"
        )
    finally:
        ssot.close()
    (hole,) = opened.corrupt_lines
    last_line = day_file.read_bytes().count(b"\n")
    assert hole.startswith(f"{day_file}:{last_line}: rev 2 of open_ms {target.open_ms} kept")
    report = scan(store, always_open)
    assert rules_of(report) == {AuditRule.REVISION_GAP.value: 1}
    (problem,) = report.problems
    assert (problem.tf, problem.open_ms) == ("1m", target.open_ms)
    assert "rev 1 missing" in problem.message
    keys_1m = next(s for s in report.series if s.symbol == "EURUSD" and s.tf == "1m")
    assert (keys_1m.keys, keys_1m.records, keys_1m.revised) == (361, 362, 1)


def test_a_duplicated_line_is_reported(store: Path, always_open: CalendarProfile) -> None:
    day_file = store / "EURUSD" / "5m" / "2020-01-02.jsonl"
    data = day_file.read_bytes()
    third = data.split(b"\n")[2]
    day_file.write_bytes(data + third + b"\n")
    report = scan(store, always_open)
    assert rules_of(report) == {"store.duplicate": 1}
    (problem,) = report.problems
    assert (problem.tf, problem.open_ms, problem.rev) == ("5m", lines_of(day_file)[2].open_ms, 0)
    assert problem.message == "rev 0 is stored 2 times"


def test_a_revision_without_a_reason_is_reported(store: Path, always_open: CalendarProfile) -> None:
    day_file = store / "EURUSD" / "1m" / "2020-01-01.jsonl"
    first = lines_of(day_file)[0]
    append_line(day_file, msgspec.structs.replace(first, rev=1))  # same market fields, no reason
    report = scan(store, always_open)
    assert rules_of(report) == {"store.revision_without_reason": 1}
    assert report.problems[0].open_ms == first.open_ms


def test_a_derived_bar_that_disagrees_with_its_1m_is_reported(
    store: Path, always_open: CalendarProfile
) -> None:
    writer = JsonlStore(store)
    writer.open()
    stored = next(writer.bars("EURUSD", Timeframe.M15, JAN_2))
    writer.append([msgspec.structs.replace(stored.event(), high=stored.high + 0.001)], "hand")
    writer.close()
    report = scan(store, always_open)
    assert rules_of(report) == {"derived.mismatch": 1}
    (problem,) = report.problems
    assert (problem.tf, problem.open_ms, problem.rev) == ("15m", JAN_2, 1)
    assert f"high {stored.high + 0.001} != {stored.high}" in problem.message


def test_a_revised_1m_never_rederived_shows_in_every_bucket_above_it(
    store: Path, always_open: CalendarProfile
) -> None:
    writer = JsonlStore(store)
    writer.open()
    minute = next(writer.bars("EURUSD", Timeframe.M1, JAN_2 + HOUR_MS))
    writer.append([msgspec.structs.replace(minute.event(), tick_count=minute.tick_count + 1)], "x")
    writer.close()
    report = scan(store, always_open)
    assert rules_of(report) == {"derived.mismatch": 6}
    assert [p.tf for p in report.problems] == [tf.value for tf in DERIVED]


def test_revisions_that_follow_the_rules_pass(store: Path, always_open: CalendarProfile) -> None:
    """A repaired 1m with its buckets re-derived, as the derived builder does it."""
    writer = JsonlStore(store)
    writer.open()
    calendar = always_open.for_symbol("EURUSD")
    minute = next(writer.bars("EURUSD", Timeframe.M1, JAN_2 + HOUR_MS))
    writer.append([msgspec.structs.replace(minute.event(), tick_count=minute.tick_count + 1)], "r")
    finals = [b.event() for b in writer.bars("EURUSD", Timeframe.M1)]
    for tf in DERIVED:
        rebuilt = [b for b in derive(finals, tf, calendar) if b.open_ms <= minute.open_ms]
        writer.append([rebuilt[-1]], "rederived from revised 1m")
    writer.close()
    report = scan(store, always_open)
    assert report.ok, report.problems
    assert {s.tf: s.revised for s in report.series if s.symbol == "EURUSD"} == dict.fromkeys(
        CLEAN_KEYS, 1
    )


def _misplaced(root: Path) -> tuple[int, str]:
    """A 2020-01-02 1m bar appended to the 2020-01-01 file."""
    bar = lines_of(root / "EURUSD" / "1m" / "2020-01-02.jsonl")[0]
    append_line(root / "EURUSD" / "1m" / "2020-01-01.jsonl", bar)
    return bar.open_ms, "store.misplaced"


def _history_5m(root: Path) -> tuple[int, str]:
    """A 5m bar stamped `history`: higher timeframes are derived only."""
    day_file = root / "EURUSD" / "5m" / "2020-01-02.jsonl"
    bars = lines_of(day_file)
    bars[4] = msgspec.structs.replace(bars[4], source=Source.HISTORY)
    day_file.write_bytes(json_codec.encode_lines(bars))
    return bars[4].open_ms, "final.source_for_tf"


def _derived_from_nothing(root: Path) -> tuple[int, str]:
    """A 1h bar at 12:00Z on Jan 2, hours after the last tick (no 1m under it)."""
    day_file = root / "EURUSD" / "1h" / "2020-01-02.jsonl"
    noon = JAN_2 + 12 * HOUR_MS
    first = lines_of(day_file)[0]
    append_line(
        day_file,
        msgspec.structs.replace(first, open_ms=noon, close_ms=noon + HOUR_MS - 1,
                                event_ts=noon + HOUR_MS - 1),
    )  # fmt: skip
    return noon, "derived.without_1m"


def _revision_first(root: Path) -> tuple[int, str]:
    """rev 1 of a key written before its rev 0."""
    day_file = root / "USDJPY" / "1m" / "2013-01-01.jsonl"
    bars = lines_of(day_file)
    bars.insert(5, msgspec.structs.replace(bars[5], rev=1, reason="repair"))
    day_file.write_bytes(json_codec.encode_lines(bars))
    return bars[5].open_ms, "store.revision_order"


@pytest.mark.parametrize(
    "damage", [_misplaced, _history_5m, _derived_from_nothing, _revision_first]
)
def test_each_further_rule_is_reported_alone(
    damage: Callable[[Path], tuple[int, str]], store: Path, always_open: CalendarProfile
) -> None:
    open_ms, rule = damage(store)
    report = scan(store, always_open)
    assert rules_of(report) == {rule: 1}
    assert report.problems[0].open_ms == open_ms


def test_unreadable_lines_and_a_torn_tail_are_named_by_file_and_line(
    store: Path, always_open: CalendarProfile
) -> None:
    day_file = store / "USDJPY" / "1m" / "2013-01-01.jsonl"
    with day_file.open("ab") as handle:
        handle.write(b'{"symbol":"USDJPY","tf":"1m"}\n{"symbol":"USD')
    before = day_file.read_bytes()
    report = scan(store, always_open)
    assert rules_of(report) == {"store.torn_tail": 1, "store.unreadable": 1}
    where = {p.rule: p.where for p in report.problems}
    assert where == {"store.unreadable": f"{day_file}:35", "store.torn_tail": f"{day_file}:36"}
    assert day_file.read_bytes() == before  # the audit never repairs


def test_a_sqlite_revision_hole_is_reported(
    shared_data: Path, tmp_path: Path, always_open: CalendarProfile
) -> None:
    root = replay_into(shared_data, tmp_path / "sqlite", "sqlite")
    db = sqlite3.connect(root / DB_NAME)
    with db:
        db.execute(
            "INSERT INTO finals SELECT symbol, tf, open_ms, 2, close_ms, open, high, low, close,"
            " volume, tick_count, source, event_ts, 'repair' FROM finals"
            " WHERE symbol = 'USDJPY' AND tf = '1h'"
        )
    db.close()
    report = through_port(root, "sqlite", always_open)
    assert rules_of(report) == {"store.revision_gap": 1}
    assert (report.problems[0].symbol, report.problems[0].tf) == ("USDJPY", "1h")


def test_the_scan_takes_the_writer_lock(store: Path) -> None:
    holder = WriterLock(store)
    holder.acquire()
    try:
        with pytest.raises(StoreLocked, match="held by pid"):
            JsonlScan(store).open()
    finally:
        holder.release()
