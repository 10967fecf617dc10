"""One behaviour suite for every FinalStore (JSONL and SQLite run the same tests).

The bars are EURUSD 1m of Monday 2019-02-04 (UTC), priced like the real market that morning.
The helpers here (`make_bar`, `disk_state`, `open_kind`) are shared by the other store tests.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Final, get_args

import msgspec
import pytest

from fxconnector.core.errors import ContractViolation, StoreCorrupt, StoreError, StoreLocked
from fxconnector.core.model.bar import OhlcvEvent, Source, StoredFinal
from fxconnector.core.time_geom import DAY_MS, HOUR_MS, MINUTE_MS, Timeframe
from fxconnector.runtime.store import ssot_jsonl, ssot_sqlite
from fxconnector.runtime.store.factory import StoreKind, open_store
from fxconnector.runtime.store.port import AppendOutcome, FinalStore
from fxconnector.runtime.store.rules import UNSPECIFIED_REASON
from fxconnector.runtime.store.ssot_sqlite import DB_NAME

KINDS: Final = get_args(StoreKind)
#: 2019-02-04T00:00:00Z, a Monday.
MONDAY_MS: Final = 1_549_238_400_000
#: 2019-02-03T22:00:00Z: Sunday 17:00 New York (winter), the open of Monday's trading day.
DAY_OPEN_MS: Final = MONDAY_MS - 2 * HOUR_MS
REPO: Final = Path(__file__).resolve().parents[3]


def make_bar(
    i: int = 0,
    *,
    symbol: str = "EURUSD",
    tf: Timeframe = Timeframe.M1,
    open_ms: int | None = None,
    shift: float = 0.0,
    rev: int = 0,
    **changes: Any,
) -> OhlcvEvent:
    """The i-th final bar of `tf` from Monday 00:00 UTC; `shift` moves every price."""
    start = MONDAY_MS + i * tf.ms if open_ms is None else open_ms
    base = 1.14567 + (i % 17) * 0.00003 + shift
    bar = OhlcvEvent(
        symbol=symbol,
        tf=tf,
        open_ms=start,
        close_ms=start + tf.ms - 1,
        open=round(base, 5),
        high=round(base + 0.00012, 5),
        low=round(base - 0.00007, 5),
        close=round(base + 0.00004, 5),
        volume=112 + i,
        tick_count=112 + i,
        complete=True,
        source=Source.HISTORY if tf is Timeframe.M1 else Source.DERIVED,
        event_ts=start + tf.ms - 1,
        rev=rev,
    )
    return msgspec.structs.replace(bar, **changes) if changes else bar


def store_path(tmp_path: Path) -> Path:
    return tmp_path / "ssot"


def open_kind(kind: StoreKind, path: Path, fsync_interval_ms: int = 50) -> FinalStore:
    """A store of `kind` at `path`, opened."""
    store = open_store(kind, path, fsync_interval_ms)
    store.open()
    return store


def sqlite_rows(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every committed row of the SQLite store at `path`, read by a second connection."""
    db = sqlite3.connect(f"file:{path / DB_NAME}?mode=ro", uri=True)
    try:
        return (
            db.execute("SELECT * FROM finals ORDER BY symbol, tf, open_ms, rev").fetchall(),
            db.execute("SELECT * FROM fetched ORDER BY symbol, from_ms").fetchall(),
        )
    finally:
        db.close()


def disk_state(kind: StoreKind, path: Path) -> object:
    """Everything the store persisted: file bytes (JSONL) or every committed row (SQLite)."""
    if kind == "sqlite":
        return sqlite_rows(path)
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*.jsonl"))
        if p.is_file()
    }


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> StoreKind:
    value: StoreKind = request.param
    return value


@pytest.fixture
def store(kind: StoreKind, tmp_path: Path) -> Iterator[FinalStore]:
    opened = open_kind(kind, store_path(tmp_path))
    yield opened
    opened.close()


# -- round trip --------------------------------------------------------------------------------


def test_bars_come_back_ordered_and_filtered(store: FinalStore) -> None:
    bars = [make_bar(i) for i in (5, 0, 3, 1, 4, 2)]
    results = store.append(bars)

    assert [r.outcome for r in results] == [AppendOutcome.NEW] * 6
    assert [r.stored.open_ms for r in results] == [b.open_ms for b in bars]  # input order
    got = list(store.bars("EURUSD", Timeframe.M1))
    assert [b.open_ms for b in got] == [MONDAY_MS + i * MINUTE_MS for i in range(6)]
    assert got[2] == StoredFinal(**msgspec.structs.asdict(make_bar(2)))
    ranged = store.bars("EURUSD", Timeframe.M1, MONDAY_MS + MINUTE_MS, MONDAY_MS + 4 * MINUTE_MS)
    assert [b.open_ms for b in ranged] == [MONDAY_MS + i * MINUTE_MS for i in (1, 2, 3)]
    assert [
        b.open_ms for b in store.bars("EURUSD", Timeframe.M1, from_ms=MONDAY_MS + 4 * MINUTE_MS)
    ] == [
        MONDAY_MS + 4 * MINUTE_MS,
        MONDAY_MS + 5 * MINUTE_MS,
    ]
    assert len(list(store.bars("EURUSD", Timeframe.M1, to_ms=MONDAY_MS + 1))) == 1
    assert list(store.bars("EURUSD", Timeframe.M5)) == []
    assert list(store.bars("GBPUSD", Timeframe.M1)) == []


def test_latest_last_open_and_series_over_symbols_and_timeframes(store: FinalStore) -> None:
    store.append(
        [
            make_bar(0),
            make_bar(1),
            make_bar(0, symbol="GBPUSD", shift=0.13),
            make_bar(0, tf=Timeframe.M5),
            make_bar(2, tf=Timeframe.H1),
        ]
    )

    assert store.series() == sorted(
        [
            ("EURUSD", Timeframe.M1),
            ("EURUSD", Timeframe.M5),
            ("EURUSD", Timeframe.H1),
            ("GBPUSD", Timeframe.M1),
        ]
    )
    assert store.last_open_ms("EURUSD", Timeframe.M1) == MONDAY_MS + MINUTE_MS
    assert store.last_open_ms("EURUSD", Timeframe.H1) == MONDAY_MS + 2 * HOUR_MS
    assert store.last_open_ms("EURUSD", Timeframe.D1) is None
    latest = store.latest("GBPUSD", Timeframe.M1, MONDAY_MS)
    assert latest is not None
    assert latest.open == round(1.14567 + 0.13, 5)
    assert latest.rev == 0
    assert latest.reason == ""
    assert store.latest("EURUSD", Timeframe.M5, MONDAY_MS + MINUTE_MS) is None
    five = store.latest("EURUSD", Timeframe.M5, MONDAY_MS)
    assert five is not None
    assert five.close_ms == MONDAY_MS + 5 * MINUTE_MS - 1
    assert five.source is Source.DERIVED


def test_outcomes_and_revisions_with_reasons(store: FinalStore) -> None:
    first = store.append([make_bar(0)])
    again = store.append([make_bar(0)], reason="ignored for a duplicate")
    corrected = store.append([make_bar(0, shift=0.0001)], reason="broker correction")
    repaired = store.append([make_bar(0, shift=0.0002)], reason="repair")
    unexplained = store.append([make_bar(0, shift=0.0003)])

    assert [r.outcome for r in first + again + corrected + repaired + unexplained] == [
        AppendOutcome.NEW,
        AppendOutcome.DUPLICATE,
        AppendOutcome.REVISION,
        AppendOutcome.REVISION,
        AppendOutcome.REVISION,
    ]
    assert again[0].stored == first[0].stored  # a duplicate answers the stored latest
    revisions = store.revisions("EURUSD", Timeframe.M1, MONDAY_MS)
    assert [(r.rev, r.reason) for r in revisions] == [
        (0, ""),
        (1, "broker correction"),
        (2, "repair"),
        (3, UNSPECIFIED_REASON),
    ]
    assert [r.open for r in revisions] == [1.14567, 1.14577, 1.14587, 1.14597]
    assert store.latest("EURUSD", Timeframe.M1, MONDAY_MS) == revisions[-1]
    assert list(store.bars("EURUSD", Timeframe.M1)) == [revisions[-1]]
    assert store.revisions("EURUSD", Timeframe.M1, MONDAY_MS + MINUTE_MS) == []


def test_volume_or_tick_count_change_is_a_revision(store: FinalStore) -> None:
    store.append([make_bar(0)])
    results = store.append(
        [make_bar(0, volume=999), make_bar(0, volume=999, tick_count=7)], reason="recount"
    )

    assert [(r.outcome, r.stored.rev) for r in results] == [
        (AppendOutcome.REVISION, 1),
        (AppendOutcome.REVISION, 2),
    ]


def test_the_callers_rev_is_ignored(store: FinalStore) -> None:
    new = store.append([make_bar(0, rev=7)])
    revised = store.append([make_bar(0, shift=0.0001, rev=0)], reason="repair")
    duplicate = store.append([make_bar(0, shift=0.0001, rev=5)])

    assert (new[0].outcome, new[0].stored.rev) == (AppendOutcome.NEW, 0)
    assert (revised[0].outcome, revised[0].stored.rev) == (AppendOutcome.REVISION, 1)
    assert (duplicate[0].outcome, duplicate[0].stored.rev) == (AppendOutcome.DUPLICATE, 1)


def test_a_key_twice_in_one_batch_compares_with_the_first(store: FinalStore) -> None:
    results = store.append(
        [make_bar(0), make_bar(0), make_bar(0, shift=0.0001), make_bar(1)], reason="fix"
    )

    assert [(r.outcome, r.stored.rev) for r in results] == [
        (AppendOutcome.NEW, 0),
        (AppendOutcome.DUPLICATE, 0),
        (AppendOutcome.REVISION, 1),
        (AppendOutcome.NEW, 0),
    ]
    assert [r.rev for r in store.revisions("EURUSD", Timeframe.M1, MONDAY_MS)] == [0, 1]


def test_appending_the_same_batch_twice_writes_nothing(
    store: FinalStore, kind: StoreKind, tmp_path: Path
) -> None:
    batch = [make_bar(i) for i in range(30)] + [make_bar(0, tf=Timeframe.M30)]
    store.append(batch)
    store.append([make_bar(3, shift=0.0001)], reason="repair")
    store.flush()
    before = disk_state(kind, store_path(tmp_path))

    again = store.append(batch[:3] + batch[4:])
    store.flush()

    assert {r.outcome for r in again} == {AppendOutcome.DUPLICATE}
    assert disk_state(kind, store_path(tmp_path)) == before


def test_reopen_gives_identical_results(kind: StoreKind, tmp_path: Path) -> None:
    path = store_path(tmp_path)
    store = open_kind(kind, path)
    store.append([make_bar(i) for i in range(120)])
    store.append([make_bar(i, tf=Timeframe.M15) for i in range(8)])
    store.append([make_bar(7, shift=0.0002)], reason="broker correction")
    store.append([make_bar(0, symbol="XAUUSD", shift=1310.0)])
    store.mark_fetched("EURUSD", MONDAY_MS, MONDAY_MS + 120 * MINUTE_MS)

    def snapshot(s: FinalStore) -> object:
        return (
            s.series(),
            {key: list(s.bars(*key)) for key in s.series()},
            s.revisions("EURUSD", Timeframe.M1, MONDAY_MS + 7 * MINUTE_MS),
            s.fetched_intervals("EURUSD", 0, 2 * MONDAY_MS),
            s.last_open_ms("EURUSD", Timeframe.M15),
        )

    before = snapshot(store)
    store.close()
    reopened = open_store(kind, path)
    report = reopened.open()
    try:
        assert snapshot(reopened) == before
        assert report.bars_loaded == 120 + 8 + 1
        assert report.torn_tails == []
        assert reopened.append([make_bar(7, shift=0.0002)])[0].outcome is AppendOutcome.DUPLICATE
    finally:
        reopened.close()


def test_daily_bar_opening_at_22_utc(kind: StoreKind, tmp_path: Path) -> None:
    path = store_path(tmp_path)
    store = open_kind(kind, path)
    daily = make_bar(0, tf=Timeframe.D1, open_ms=DAY_OPEN_MS)
    store.append([daily, make_bar(0, open_ms=DAY_OPEN_MS)])
    store.close()

    store = open_kind(kind, path)
    try:
        got = list(store.bars("EURUSD", Timeframe.D1))
        assert [(b.open_ms, b.close_ms) for b in got] == [(DAY_OPEN_MS, DAY_OPEN_MS + DAY_MS - 1)]
        assert list(store.bars("EURUSD", Timeframe.D1, DAY_OPEN_MS, DAY_OPEN_MS + 1)) == got
        assert list(store.bars("EURUSD", Timeframe.D1, MONDAY_MS)) == []  # opened the day before
        assert store.latest("EURUSD", Timeframe.M1, DAY_OPEN_MS) is not None
    finally:
        store.close()


# -- contract ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param(
            {"complete": False, "source": Source.STREAM, "event_ts": MONDAY_MS + 5},
            "complete must be true",
            id="preview",
        ),
        pytest.param({"source": Source.STREAM}, "not a final source", id="final-from-stream"),
        pytest.param({"close_ms": MONDAY_MS + MINUTE_MS}, "close_ms", id="bad-close"),
        pytest.param({"event_ts": MONDAY_MS}, "event_ts", id="event-ts-not-close"),
        pytest.param({"high": 1.1450, "low": 1.1460}, "OHLC order", id="high-below-low"),
        pytest.param({"low": float("nan")}, "OHLC order", id="nan-low"),
        pytest.param({"high": float("inf")}, "OHLC order", id="infinite-high"),
        pytest.param({"symbol": "../etc"}, "symbol", id="path-escape-symbol"),
        pytest.param({"volume": -1}, "volume", id="negative-volume"),
        pytest.param({"open_ms": float(MONDAY_MS)}, "open_ms", id="float-open-ms"),
    ],
)
def test_contract_violations_are_rejected_and_nothing_is_written(
    store: FinalStore,
    kind: StoreKind,
    tmp_path: Path,
    changes: dict[str, Any],
    message: str,
) -> None:
    store.append([make_bar(0)])
    store.flush()
    before = disk_state(kind, store_path(tmp_path))

    with pytest.raises(ContractViolation, match=message) as raised:
        store.append([make_bar(1), make_bar(2, **changes), make_bar(3)])
    store.flush()

    assert "bar #1" in str(raised.value)
    assert disk_state(kind, store_path(tmp_path)) == before
    assert [b.open_ms for b in store.bars("EURUSD", Timeframe.M1)] == [MONDAY_MS]


def test_an_unreadable_store_is_refused_or_reported_never_silent(
    kind: StoreKind, tmp_path: Path
) -> None:
    path = store_path(tmp_path)
    store = open_kind(kind, path)
    store.append([make_bar(0)])
    store.close()
    damaged = path / DB_NAME if kind == "sqlite" else path / "EURUSD" / "1m" / "2019-02-04.jsonl"
    damaged.write_bytes(b"this is not what the store wrote\n" * 200)

    if kind == "sqlite":  # one database file: nothing in it can be trusted
        with pytest.raises(StoreCorrupt, match=re.escape(str(damaged))):
            store.open()
    else:  # JSONL: each line is reported with its number and skipped
        report = store.open()
        store.close()
        assert report.bars_loaded == 0
        assert len(report.corrupt_lines) == 101  # 100 listed with their line, then a count
        assert report.corrupt_lines[99].startswith(f"{damaged}:100: ")
        assert report.corrupt_lines[100] == f"{damaged}: 100 more unreadable lines not listed"
    damaged.unlink()
    assert store.open().bars_loaded == 0  # the failed open released the lock
    store.close()


# -- coverage ----------------------------------------------------------------------------------


def test_fetched_intervals_merge_clip_and_persist(kind: StoreKind, tmp_path: Path) -> None:
    path = store_path(tmp_path)
    m = MINUTE_MS
    store = open_kind(kind, path)
    store.mark_fetched("EURUSD", MONDAY_MS, MONDAY_MS + 10 * m)
    store.mark_fetched("EURUSD", MONDAY_MS + 10 * m, MONDAY_MS + 20 * m)  # adjacent
    store.mark_fetched("EURUSD", MONDAY_MS + 15 * m, MONDAY_MS + 25 * m)  # overlapping
    store.mark_fetched("EURUSD", MONDAY_MS + 60 * m, MONDAY_MS + 70 * m)  # disjoint
    store.mark_fetched("EURUSD", MONDAY_MS + 2 * m, MONDAY_MS + 3 * m)  # already covered
    store.mark_fetched("EURUSD", MONDAY_MS + 90 * m, MONDAY_MS + 90 * m)  # empty
    store.mark_fetched("GBPUSD", MONDAY_MS, MONDAY_MS + m)

    everything = [(MONDAY_MS, MONDAY_MS + 25 * m), (MONDAY_MS + 60 * m, MONDAY_MS + 70 * m)]
    assert store.fetched_intervals("EURUSD", 0, 2 * MONDAY_MS) == everything
    assert store.fetched_intervals("EURUSD", MONDAY_MS + 5 * m, MONDAY_MS + 65 * m) == [
        (MONDAY_MS + 5 * m, MONDAY_MS + 25 * m),
        (MONDAY_MS + 60 * m, MONDAY_MS + 65 * m),
    ]
    assert store.fetched_intervals("EURUSD", MONDAY_MS + 30 * m, MONDAY_MS + 60 * m) == []
    assert store.fetched_intervals("USDJPY", 0, 2 * MONDAY_MS) == []
    store.close()

    store = open_kind(kind, path)
    try:
        assert store.fetched_intervals("EURUSD", 0, 2 * MONDAY_MS) == everything
        assert store.fetched_intervals("GBPUSD", 0, 2 * MONDAY_MS) == [(MONDAY_MS, MONDAY_MS + m)]
        store.mark_fetched("EURUSD", MONDAY_MS + 25 * m, MONDAY_MS + 60 * m)  # fills the hole
        assert store.fetched_intervals("EURUSD", 0, 2 * MONDAY_MS) == [
            (MONDAY_MS, MONDAY_MS + 70 * m)
        ]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("symbol", "from_ms", "to_ms"),
    [
        ("EURUSD", MONDAY_MS + 1, MONDAY_MS + MINUTE_MS),
        ("EURUSD", MONDAY_MS + MINUTE_MS, MONDAY_MS),
        ("eur/usd", MONDAY_MS, MONDAY_MS + MINUTE_MS),
    ],
)
def test_bad_fetched_intervals_are_rejected(
    store: FinalStore, symbol: str, from_ms: int, to_ms: int
) -> None:
    with pytest.raises(ContractViolation):
        store.mark_fetched(symbol, from_ms, to_ms)
    assert store.fetched_intervals("EURUSD", 0, 2 * MONDAY_MS) == []


# -- lifecycle and the writer lock -------------------------------------------------------------

_TRY_OPEN: Final = """
import sys
from pathlib import Path
from fxconnector.core.errors import StoreLocked
from fxconnector.runtime.store.factory import open_store
store = open_store(sys.argv[1], Path(sys.argv[2]))
try:
    store.open()
except StoreLocked as exc:
    print(exc)
    sys.exit(3)
print("opened", len(list(store.bars("EURUSD", store.series()[0][1]))))
store.close()
"""


def _try_open_elsewhere(kind: StoreKind, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _TRY_OPEN, kind, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )


def test_a_second_writer_gets_store_locked(kind: StoreKind, tmp_path: Path) -> None:
    path = store_path(tmp_path)
    first = open_kind(kind, path)
    first.append([make_bar(0), make_bar(1)])
    first.flush()

    with pytest.raises(StoreLocked, match=rf"pid {os.getpid()}\b") as raised:
        open_kind(kind, path)
    assert str(path / ".writer.lock") in str(raised.value)
    elsewhere = _try_open_elsewhere(kind, path)
    assert elsewhere.returncode == 3, elsewhere.stderr
    assert f"held by pid {os.getpid()}" in elsewhere.stdout

    first.close()
    elsewhere = _try_open_elsewhere(kind, path)
    assert (elsewhere.returncode, elsewhere.stdout.strip()) == (0, "opened 2"), elsewhere.stderr
    second = open_kind(kind, path)
    assert len(list(second.bars("EURUSD", Timeframe.M1))) == 2
    second.close()


def test_a_store_that_is_not_open_refuses_work(kind: StoreKind, tmp_path: Path) -> None:
    store = open_store(kind, store_path(tmp_path))
    with pytest.raises(StoreError, match="open"):
        store.append([make_bar(0)])
    store.open()
    store.append([make_bar(0)])
    with pytest.raises(StoreError, match="already open"):
        store.open()
    store.close()
    store.close()  # idempotent
    for call in (
        lambda: list(store.bars("EURUSD", Timeframe.M1)),
        lambda: store.latest("EURUSD", Timeframe.M1, MONDAY_MS),
        store.flush,
        lambda: store.mark_fetched("EURUSD", MONDAY_MS, MONDAY_MS + MINUTE_MS),
        store.series,
    ):
        with pytest.raises(StoreError, match="closed"):
            call()
    store.open()  # a closed store can be opened again
    try:
        assert store.latest("EURUSD", Timeframe.M1, MONDAY_MS) is not None
    finally:
        store.close()


def test_the_fsync_interval_bounds_how_long_appends_stay_unflushed(
    kind: StoreKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = store_path(tmp_path)
    now = [1000.0]
    fake_time = SimpleNamespace(monotonic=lambda: now[0])
    monkeypatch.setattr(ssot_jsonl, "time", fake_time)
    monkeypatch.setattr(ssot_sqlite, "time", fake_time)
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)

    def durable() -> int:
        """JSONL: fsync calls so far; SQLite: rows another connection can see (committed)."""
        if kind == "jsonl":
            return len(synced)
        return len(sqlite_rows(path)[0])

    store = open_kind(kind, path, fsync_interval_ms=50)
    try:
        store.append([make_bar(0)])
        assert durable() == 0
        now[0] += 0.049
        store.append([make_bar(1)])
        assert durable() == 0
        now[0] += 0.002  # the first append is now 51 ms old: this append flushes everything
        store.append([make_bar(2)])
        # SQLite: 3 committed rows; JSONL: the day file and the 3 folders that gained an entry
        # (EURUSD/1m/, EURUSD/, the root).
        assert durable() == (3 if kind == "sqlite" else 4)
        store.append([make_bar(3)])
        assert durable() == (3 if kind == "sqlite" else 4)
        store.flush()
        assert durable() == (4 if kind == "sqlite" else 5)  # JSONL: only the day file again
    finally:
        store.close()
