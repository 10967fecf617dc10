"""`fxconnector export` on a store replayed from real ticks: Parquet, CSV and JSON lines read
back by pandas, polars and DuckDB give the rows of `fxconnector bars`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest

from fxconnector.app.main import main
from fxconnector.client.frames import BAR_SCHEMA
from fxconnector.core.time_geom import iso_utc

DAY_FROM = "2019-02-04T00:00:00Z"
DAY_TO = "2019-02-05T00:00:00Z"
TIMES = ("open_ms", "close_ms", "event_ts")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EURUSD of Monday 2019-02-04 (Dukascopy ticks) replayed into a store."""
    root = tmp_path_factory.mktemp("export") / "ssot"
    code = main(
        ["replay", str(shared_data / "dukascopy"), "--symbol", "EURUSD", "--store", str(root)]
    )
    assert code == 0
    return root


def reference(capsys: pytest.CaptureFixture[str], store: Path, tf: str) -> list[dict[str, Any]]:
    """What `fxconnector bars` prints, as rows with times in epoch ms."""
    code, out, err = cli(
        capsys, "bars", "--symbol", "EURUSD", "--tf", tf, "--store", str(store),
        "--from", DAY_FROM, "--to", DAY_TO,
    )  # fmt: skip
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows
    return rows


def frame_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """pandas rows with the UTC timestamps back in epoch ms and volume as the contract has it."""
    assert list(frame.columns) == BAR_SCHEMA.names
    rows = []
    for row in frame.to_dict("records"):
        for name in TIMES:
            stamp = row[name]
            assert stamp.tzinfo is not None
            assert stamp.utcoffset().total_seconds() == 0
            row[name] = int(stamp.timestamp() * 1000)
        row["volume"] = int(row["volume"]) if row["volume"].is_integer() else row["volume"]
        rows.append(row)
    return rows


def export(capsys: pytest.CaptureFixture[str], store: Path, tf: str, fmt: str, out: Path) -> None:
    code, _, err = cli(
        capsys, "export", "--symbol", "EURUSD", "--tf", tf, "--from", DAY_FROM, "--to", DAY_TO,
        "--format", fmt, "--store", str(store), "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert f"out={out}" in err


@pytest.mark.parametrize("tf", ["1m", "1h"])
def test_parquet_is_typed_and_holds_the_rows_of_bars(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], tf: str
) -> None:
    expected = reference(capsys, store, tf)
    out = tmp_path / f"eurusd-{tf}.parquet"
    export(capsys, store, tf, "parquet", out)
    assert pq.read_schema(out).equals(BAR_SCHEMA)

    assert frame_rows(pd.read_parquet(out)) == expected

    polars_frame = pl.read_parquet(out)
    assert polars_frame.schema["open_ms"] == pl.Datetime("ms", "UTC")
    assert polars_frame.schema["close"] == pl.Float64
    assert frame_rows(polars_frame.to_pandas()) == expected

    with duckdb.connect() as db:
        kinds = {
            row[0]: row[1]
            for row in db.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(out)]).fetchall()
        }
        assert kinds["open_ms"] == "TIMESTAMP WITH TIME ZONE"
        assert kinds["high"] == "DOUBLE"
        got = db.execute(
            "SELECT epoch_ms(open_ms), epoch_ms(close_ms), open, high, low, close, tick_count, "
            "source, rev FROM read_parquet(?) ORDER BY open_ms",
            [str(out)],
        ).fetchall()
    assert got == [
        (
            r["open_ms"], r["close_ms"], r["open"], r["high"], r["low"], r["close"],
            r["tick_count"], r["source"], r["rev"],
        )
        for r in expected
    ]  # fmt: skip


def test_csv_and_jsonl_hold_the_rows_of_bars(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = reference(capsys, store, "5m")
    csv_out = tmp_path / "eurusd.csv"
    export(capsys, store, "5m", "csv", csv_out)
    with duckdb.connect() as db:
        got = db.execute(
            "SELECT epoch_ms(open_ms), close, tick_count FROM read_csv(?) ORDER BY open_ms",
            [str(csv_out)],
        ).fetchall()
    assert got == [(r["open_ms"], r["close"], r["tick_count"]) for r in expected]
    polars_frame = pl.read_csv(csv_out, try_parse_dates=True)
    assert polars_frame["close"].to_list() == [r["close"] for r in expected]

    jsonl_out = tmp_path / "eurusd.jsonl"
    export(capsys, store, "5m", "jsonl", jsonl_out)
    assert [json.loads(line) for line in jsonl_out.read_text().splitlines()] == expected
    assert pd.read_json(jsonl_out, lines=True)["open_ms"].tolist() == [
        r["open_ms"] for r in expected
    ]
    with duckdb.connect() as db:
        (count,) = db.execute("SELECT count(*) FROM read_json(?)", [str(jsonl_out)]).fetchone() or (
            0,
        )
    assert count == len(expected)


def test_bars_csv_is_exports_csv(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One CSV shape: `bars --format csv` prints what `export --format csv` writes."""
    csv_out = tmp_path / "eurusd.csv"
    export(capsys, store, "15m", "csv", csv_out)
    code, out, err = cli(
        capsys, "bars", "--symbol", "EURUSD", "--tf", "15m", "--store", str(store),
        "--from", DAY_FROM, "--to", DAY_TO, "--format", "csv",
    )  # fmt: skip
    assert code == 0, err
    assert out == csv_out.read_text()
    assert out.splitlines()[0] == ",".join(f'"{name}"' for name in BAR_SCHEMA.names)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_reader_that_goes_away_ends_bars_quietly(store: Path, fmt: str) -> None:
    """`fxconnector bars ... | head -1`: the first line arrives, then the command ends like
    `cat` does, exit 141 (128 + SIGPIPE), with no traceback and nothing on stderr."""
    with subprocess.Popen(
        [sys.executable, "-m", "fxconnector.app.main", "bars", "--symbol", "EURUSD", "--tf", "1m",
         "--store", str(store), "--format", fmt],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # the reader goes away with ~1,400 lines still to come
        err = proc.stderr.read()
        code = proc.wait(timeout=60)
    assert first.startswith(b"{" if fmt == "jsonl" else b'"symbol","tf"')
    assert (code, err) == (141, b"")


def test_an_empty_range_still_writes_a_readable_file(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "none.parquet"
    code, _, err = cli(
        capsys, "export", "--symbol", "EURUSD", "--tf", "1m", "--from", "2030-01-01",
        "--format", "parquet", "--store", str(store), "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert "rows=0" in err
    assert pd.read_parquet(out).empty
    # Never silently: the warning names the range asked and the one the store holds.
    code, bars_out, _ = cli(
        capsys, "bars", "--symbol", "EURUSD", "--tf", "1m", "--store", str(store)
    )
    opens = [json.loads(line)["open_ms"] for line in bars_out.splitlines()]
    assert code == 0
    assert opens
    first, last = (iso_utc(opens[0]), iso_utc(opens[-1]))
    assert (
        "fxconnector export: warning: no EURUSD 1m bars in [2030-01-01T00:00:00Z, end); the "
        f"store holds EURUSD 1m bars opening from {first} to {last}\n"
    ) in err


def test_a_series_the_store_lacks_is_named_in_the_warning(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "none.csv"
    code, _, err = cli(
        capsys, "export", "--symbol", "GBPUSD", "--tf", "1h", "--to", "2019-02-05",
        "--format", "csv", "--store", str(store), "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert (
        "warning: no GBPUSD 1h bars in [start, 2019-02-05T00:00:00Z); the store holds no "
        "GBPUSD 1h bars\n"
    ) in err


def test_a_range_with_bars_gives_no_warning(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(
        capsys, "export", "--symbol", "EURUSD", "--tf", "1h", "--from", DAY_FROM, "--to", DAY_TO,
        "--format", "jsonl", "--store", str(store), "--out", str(tmp_path / "day.jsonl"),
    )  # fmt: skip
    assert code == 0, err
    assert "rows=24 " in err
    assert "warning" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tf", "2m"], "--tf"),
        (["--tf", "1m", "--from", "yesterday-ish"], "--from"),
        (["--tf", "1m", "--from", "2019-02-05", "--to", "2019-02-04"], "--to must be after"),
        (["--tf", "1m", "--store", "/nonexistent/store"], "--store"),
        (["--tf", "1m", "--out", "/nonexistent/dir/x.parquet"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    store: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    base = ["export", "--symbol", "EURUSD", "--format", "parquet", "--store", str(store)]
    code, _, err = cli(capsys, *base, *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
