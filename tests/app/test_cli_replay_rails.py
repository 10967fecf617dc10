"""`fxconnector replay` over tiny CSVs with one absurd row: the row is refused and counted, and
the replay's range and store come from the accepted ticks only (issue 11 point 9).

The CLI runs in-process (`main`, as a user's shell calls it); under the old behaviour a 1970 row
stretched the replay over 54 years of empty minutes (minutes of work, 1 GB) and the test timeout
caught it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fxconnector.app.main import main
from fxconnector.app.timeparse import parse_time_ms
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.store.factory import StoreKind, open_store

GOOD_ROWS = [
    "2024-03-05T10:00:00.000Z,1.1000,1.1002",
    "2024-03-05T10:00:30.000Z,1.1001,1.1003",
    "2024-03-05T10:01:10.000Z,1.1002,1.1004",
]
DAY_FROM = "2024-03-04T22:00:00Z"  # fx_ny: the trading day of 2024-03-05 opens 22:00 UTC before
DAY_TO = "2024-03-05T22:00:00Z"


def replay(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    rows: list[str],
    *extra: str,
    header: str = "ts,bid,ask",
) -> tuple[int, str, str, Path]:
    csv = tmp_path / "ticks.csv"
    csv.write_text("\n".join([header, *rows]) + "\n")
    store = tmp_path / "ssot"
    try:
        code = main(["replay", str(csv), "--symbol", "EURUSD", "--store", str(store), *extra])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err, store


def summary(out: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", out))


def stored_minutes(store: Path, kind: StoreKind = "jsonl") -> list[int]:
    ssot = open_store(kind, store)
    ssot.open()
    try:
        return [bar.open_ms for bar in ssot.bars("EURUSD", Timeframe.M1)]
    finally:
        ssot.close()


GOOD_MINUTES = [
    parse_time_ms("2024-03-05T10:00:00Z", flag="t"),
    parse_time_ms("2024-03-05T10:01:00Z", flag="t"),
]


def test_clean_file_is_the_reference(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err, store = replay(capsys, tmp_path, GOOD_ROWS)
    assert code == 0, err
    fields = summary(out)
    assert (fields["from"], fields["to"]) == (DAY_FROM, DAY_TO)
    assert fields["rejected"] == "none"
    assert stored_minutes(store) == GOOD_MINUTES


@pytest.mark.parametrize(
    ("row", "position", "reason"),
    [
        ("1970-01-02T10:00:00.000Z,1.1000,1.1002", 0, "before_epoch_rail"),
        ("1970-01-02T10:00:00.000Z,1.1000,1.1002", 3, "before_epoch_rail"),
        ("2099-03-05T10:00:00.000Z,1.1000,1.1002", 0, "future_timestamp"),
        ("2099-03-05T10:00:00.000Z,1.1000,1.1002", 2, "future_timestamp"),
        ("2024-03-05T10:00:40.000Z,1e308,1e308", 1, "price_out_of_range"),
        ("2024-03-05T10:00:40.000Z,1e-300,1e-300", 1, "price_out_of_range"),
    ],
)
def test_one_absurd_row_is_counted_and_leaves_the_range_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, row: str, position: int, reason: str
) -> None:
    rows = [*GOOD_ROWS]
    rows.insert(position, row)
    code, out, err, store = replay(capsys, tmp_path, rows)
    assert code == 0, err
    fields = summary(out)
    assert fields["rejected"] == f"{reason}:1"
    assert (fields["ticks"], fields["applied"]) == ("4", "3")
    # The range is the accepted ticks' trading day, not 1970 or 2099.
    assert (fields["from"], fields["to"]) == (DAY_FROM, DAY_TO)
    assert stored_minutes(store) == GOOD_MINUTES


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_bad_sizes_are_counted_and_never_reach_a_bar(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: StoreKind
) -> None:
    rows = [
        "2024-03-05T10:00:00.000Z,1.1000,1.1002,1,1",
        "2024-03-05T10:00:20.000Z,1.1001,1.1003,-5,1",
        "2024-03-05T10:00:30.000Z,1.1001,1.1003,1,1e38",
        "2024-03-05T10:00:40.000Z,1.1001,1.1003,nan,1",
        "2024-03-05T10:00:50.000Z,1.1001,1.1003,2,2",
        "2024-03-05T10:01:10.000Z,1.1002,1.1004,3,3",
    ]
    code, out, err, store = replay(
        capsys,
        tmp_path,
        rows,
        "--volume",
        "size",
        "--store-kind",
        kind,
        header="ts,bid,ask,bid_volume,ask_volume",
    )
    assert code == 0, err
    fields = summary(out)
    assert fields["rejected"] == "bad_volume:3"
    assert fields["applied"] == "3"
    ssot = open_store(kind, store)
    ssot.open()
    try:
        volumes = [bar.volume for bar in ssot.bars("EURUSD", Timeframe.M1)]
    finally:
        ssot.close()
    assert volumes == [3.0, 3.0]  # bid sizes 1 + 2, then 3


def test_a_file_with_no_acceptable_tick_is_one_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rows = ["1970-01-02T10:00:00.000Z,1.1000,1.1002", "2099-03-05T10:00:00.000Z,1.1,1.1002"]
    code, out, err, _ = replay(capsys, tmp_path, rows)
    assert code == 2
    assert out == ""
    # One line past the progress lines (JSON, off a terminal) of the replay that had begun.
    (err,) = [line for line in err.splitlines() if '"event":"progress"' not in line]
    assert "none of 2 ticks passed the tick rails" in err
    assert "before_epoch_rail=1" in err
    assert "future_timestamp=1" in err
