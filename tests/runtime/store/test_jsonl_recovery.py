"""JSONL specifics: the file layout, canonical bytes, and recovery on open (DESIGN §6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fxconnector.core.model.bar import StoredFinal
from fxconnector.core.time_geom import DAY_MS, MINUTE_MS, Timeframe
from fxconnector.core.utils import json_codec
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.runtime.store.test_store_suite import DAY_OPEN_MS, MONDAY_MS, make_bar

#: DESIGN §3's example bar, byte for byte.
DESIGN_EXAMPLE = (
    b'{"symbol":"EURUSD","tf":"1m","open_ms":1549238400000,"close_ms":1549238459999,'
    b'"open":1.14567,"high":1.14572,"low":1.1456,"close":1.14561,"volume":112,"tick_count":112,'
    b'"complete":true,"source":"history","event_ts":1549238459999,"rev":0}'
)


def _day_file(root: Path, symbol: str = "EURUSD", tf: str = "1m") -> Path:
    return root / symbol / tf / "2019-02-04.jsonl"


def _filled(root: Path, count: int = 5) -> Path:
    store = JsonlStore(root)
    store.open()
    store.append([make_bar(i) for i in range(count)])
    store.close()
    return _day_file(root)


def test_layout_is_symbol_tf_utc_day(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path)
    store.open()
    store.append(
        [
            make_bar(0),
            make_bar(0, open_ms=MONDAY_MS - MINUTE_MS),  # Sunday 23:59 UTC
            make_bar(0, tf=Timeframe.D1, open_ms=DAY_OPEN_MS),  # Sunday 22:00 UTC
        ]
    )
    store.mark_fetched("EURUSD", MONDAY_MS, MONDAY_MS + MINUTE_MS)
    store.close()

    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.jsonl"))
    assert files == [
        "EURUSD/1d/2019-02-03.jsonl",
        "EURUSD/1m/2019-02-03.jsonl",
        "EURUSD/1m/2019-02-04.jsonl",
        "EURUSD/fetched.jsonl",
    ]
    fetched = (tmp_path / "EURUSD" / "fetched.jsonl").read_bytes()
    assert fetched == b'{"from_ms":1549238400000,"to_ms":1549238460000}\n'


def test_a_first_final_is_stored_as_the_public_event_bytes(tmp_path: Path) -> None:
    event = make_bar(0, high=1.14572, low=1.1456, close=1.14561, volume=112, tick_count=112)
    store = JsonlStore(tmp_path)
    store.open()
    store.append([event])
    store.append([make_bar(0, close=1.14562)], reason="broker correction")
    store.close()

    lines = _day_file(tmp_path).read_bytes().splitlines()
    assert lines[0] == json_codec.encode(event) == DESIGN_EXAMPLE
    revision = json_codec.decode(lines[1], StoredFinal)
    assert (revision.rev, revision.reason, revision.close) == (1, "broker correction", 1.14562)
    assert lines[1].endswith(b',"rev":1,"reason":"broker correction"}')


def test_a_torn_last_line_is_cut_and_reported(tmp_path: Path) -> None:
    day = _filled(tmp_path)
    fetched = tmp_path / "EURUSD" / "fetched.jsonl"
    half_interval = b'{"from_ms":15'
    fetched.write_bytes(b'{"from_ms":1549238400000,"to_ms":1549238460000}\n' + half_interval)
    intact = day.read_bytes()
    torn = json_codec.encode(make_bar(5))[:57]
    with day.open("ab") as handle:
        handle.write(torn)

    store = JsonlStore(tmp_path)
    report = store.open()
    try:
        assert sorted(report.torn_tails) == sorted(
            [f"{day}: dropped {len(torn)} bytes", f"{fetched}: dropped {len(half_interval)} bytes"]
        )
        assert report.bars_loaded == 5
        assert report.files_checked == 2
        assert day.read_bytes() == intact
        assert store.fetched_intervals("EURUSD", 0, 2 * MONDAY_MS) == [
            (MONDAY_MS, MONDAY_MS + MINUTE_MS)
        ]
        store.append([make_bar(5)])  # lands on a clean line after the cut
    finally:
        store.close()

    store = JsonlStore(tmp_path)
    report = store.open()
    store.close()
    assert (report.torn_tails, report.bars_loaded) == ([], 6)


@pytest.mark.parametrize(
    ("line_3", "reason"),
    [
        pytest.param(b'{"symbol":"EURUSD","tf":"1m","open_ms":15', "truncated", id="garbage"),
        pytest.param(b"", "empty line", id="blank"),
        pytest.param(
            json_codec.encode(make_bar(2, high=1.1, low=1.2)), "OHLC order", id="high-below-low"
        ),
        pytest.param(
            json_codec.encode(make_bar(2, complete=False)), "complete must be true", id="preview"
        ),
        pytest.param(json_codec.encode(make_bar(0)), "rev 0 of open_ms", id="rev-0-twice"),
        pytest.param(
            json_codec.encode(make_bar(2, symbol="GBPUSD")), "GBPUSD 1m bar", id="wrong-folder"
        ),
        pytest.param(
            json_codec.encode(make_bar(2, open_ms=MONDAY_MS - MINUTE_MS)),
            "not on this file's UTC day",
            id="wrong-day",
        ),
        pytest.param(b'{"symbol":"EURUSD","extra":1}', "unknown field", id="unknown-field"),
    ],
)
def test_a_bad_line_is_reported_with_file_and_line_and_the_rest_served(
    tmp_path: Path, line_3: bytes, reason: str
) -> None:
    day = _filled(tmp_path)
    store = JsonlStore(tmp_path)
    store.open()
    store.mark_fetched("EURUSD", MONDAY_MS, MONDAY_MS + 5 * MINUTE_MS)
    store.close()
    lines = day.read_bytes().splitlines()
    lines[2] = line_3
    day.write_bytes(b"\n".join(lines) + b"\n")

    report = store.open()
    try:
        (problem,) = report.corrupt_lines
        assert problem.startswith(f"{day}:3: ")
        assert reason in problem
        # Every other line is served; the damaged minute is missing, not quiet: the day of a
        # skipped 1m line loses its fetched coverage, so the minute is asked again.
        served = [b.open_ms for b in store.bars("EURUSD", Timeframe.M1)]
        assert served == [MONDAY_MS + i * MINUTE_MS for i in (0, 1, 3, 4)]
        assert report.bars_loaded == 4
        assert store.fetched_intervals("EURUSD", MONDAY_MS, MONDAY_MS + 5 * MINUTE_MS) == []
        # Writing goes on: the minute fetched again lands after the bad line, as rev 0.
        (result,) = store.append([make_bar(2)])
        assert result.stored.rev == 0
    finally:
        store.close()
    assert day.read_bytes().splitlines()[2] == line_3  # the evidence stays for the audit
    report = store.open()
    store.close()
    assert report.bars_loaded == 5
    assert [c.split(": ")[0] for c in report.corrupt_lines] == [f"{day}:3"]


def test_a_foreign_file_name_in_a_series_folder_is_reported_and_skipped(tmp_path: Path) -> None:
    day = _filled(tmp_path)
    (day.parent / "notes.jsonl").write_bytes(b"anything\n")

    store = JsonlStore(tmp_path)
    report = store.open()
    store.close()
    assert report.bars_loaded == 5
    (problem,) = report.corrupt_lines
    assert problem.startswith(f"{day.parent / 'notes.jsonl'}: not a day file name")


def test_a_bad_coverage_line_is_skipped_and_reported(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path)
    store.open()
    store.mark_fetched("EURUSD", MONDAY_MS, MONDAY_MS + MINUTE_MS)
    store.mark_fetched("EURUSD", MONDAY_MS + 2 * MINUTE_MS, MONDAY_MS + 3 * MINUTE_MS)
    store.close()
    fetched = tmp_path / "EURUSD" / "fetched.jsonl"
    first, second = fetched.read_bytes().splitlines()
    bad = b'{"from_ms":5,"to_ms":3}'
    fetched.write_bytes(b"\n".join([first, b"{garbage", bad, second]) + b"\n")

    report = store.open()
    try:
        assert [c.split(": ")[0] for c in report.corrupt_lines] == [f"{fetched}:2", f"{fetched}:3"]
        assert store.fetched_intervals("EURUSD", 0, MONDAY_MS + DAY_MS) == [
            (MONDAY_MS, MONDAY_MS + MINUTE_MS),
            (MONDAY_MS + 2 * MINUTE_MS, MONDAY_MS + 3 * MINUTE_MS),
        ]
    finally:
        store.close()


def test_revisions_are_read_back_from_the_day_file(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path)
    store.open()
    store.append([make_bar(i) for i in range(3)])
    store.append([make_bar(1, shift=0.0001)], reason="repair")
    store.append([make_bar(1, shift=0.0002), make_bar(2, shift=0.0001)], reason="repair 2")
    store.close()

    store = JsonlStore(tmp_path)
    store.open()
    try:
        assert [
            (r.rev, r.reason)
            for r in store.revisions("EURUSD", Timeframe.M1, MONDAY_MS + MINUTE_MS)
        ] == [
            (0, ""),
            (1, "repair"),
            (2, "repair 2"),
        ]
        assert len(_day_file(tmp_path).read_bytes().splitlines()) == 6
    finally:
        store.close()


def test_fetched_coverage_is_compacted_on_open(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path)
    store.open()
    for minute in range(200):  # one line per minute, as a tail guard would write them
        store.mark_fetched(
            "EURUSD", MONDAY_MS + minute * MINUTE_MS, MONDAY_MS + (minute + 1) * MINUTE_MS
        )
    store.close()
    fetched = tmp_path / "EURUSD" / "fetched.jsonl"
    assert len(fetched.read_bytes().splitlines()) == 200

    store = JsonlStore(tmp_path)
    store.open()
    store.close()

    assert fetched.read_bytes() == b'{"from_ms":1549238400000,"to_ms":1549250400000}\n'
    assert not (tmp_path / "EURUSD" / "fetched.jsonl.tmp").exists()
