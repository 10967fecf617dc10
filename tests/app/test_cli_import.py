"""`fxconnector import` of 1m candle files: FXCM's real zipped yearly CSVs (a week of them) and
HistData M1 written here; bad lines, bad files, and replay's one-line answer to a zip."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fxconnector.app.main import main

WEEK = ("2012-03-05T00:00:00Z", "2012-03-10T00:00:00Z")  # Mon to Sat, before US DST
FXCM_BID = "fxcm/fxcm-gbpusd-m1-bid-2012.csv.zip"
FXCM_ASK = "fxcm/fxcm-gbpusd-m1-ask-2012.csv.zip"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr without its progress lines (JSON, off a terminal)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    said = [line for line in err.splitlines(keepends=True) if '"event":"progress"' not in line]
    return code, out, "".join(said)


def summary(out: str) -> dict[str, str]:
    (line,) = [line for line in out.splitlines() if line.startswith("import ")]
    return dict(pair.split("=", 1) for pair in line.split()[1:])


def stored(capsys: pytest.CaptureFixture[str], store: Path, symbol: str, tf: str) -> list[Any]:
    code, out, err = cli(capsys, "bars", "--symbol", symbol, "--tf", tf, "--store", str(store))
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def fxcm_rows(
    path: Path, from_iso: str, to_iso: str
) -> list[tuple[int, float, float, float, float]]:
    """The zip's candles in [from, to), read independently of the importer."""
    lo = datetime.fromisoformat(from_iso).timestamp() * 1000
    hi = datetime.fromisoformat(to_iso).timestamp() * 1000
    with zipfile.ZipFile(path) as archive:
        (name,) = archive.namelist()
        text = archive.read(name).decode()
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        open_ms = int(datetime.fromisoformat(row["timestamp"]).timestamp() * 1000)
        if lo <= open_ms < hi:
            o, h, lo_, c = (float(row[k]) for k in ("open", "high", "low", "close"))
            rows.append((open_ms, o, h, lo_, c))
    return rows


@pytest.mark.slow
def test_a_week_of_fxcm_candles_is_stored_as_history_finals_and_derived(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "ssot"
    argv = ["import", str(shared_data / FXCM_BID), "--symbol", "GBPUSD", "--store", str(store)]
    code, out, err = cli(capsys, *argv, "--from", WEEK[0], "--to", WEEK[1])
    assert code == 0, err
    said = summary(out)
    expected = fxcm_rows(shared_data / FXCM_BID, *WEEK)
    assert said["format"] == "fxcm"
    assert said["candles"] == said["stored"] == str(len(expected))
    assert said["bad_lines"] == "0"

    finals = stored(capsys, store, "GBPUSD", "1m")
    got = [(b["open_ms"], b["open"], b["high"], b["low"], b["close"]) for b in finals]
    assert got == expected
    assert {(b["source"], b["complete"], b["tick_count"], b["rev"]) for b in finals} == {
        ("history", True, 0, 0)
    }
    assert all(b["event_ts"] == b["close_ms"] == b["open_ms"] + 59_999 for b in finals)

    # Every derived hour is exactly the aggregate of its stored minutes.
    hours = stored(capsys, store, "GBPUSD", "1h")
    assert len(hours) >= 100
    for hour in hours:
        inside = [b for b in finals if hour["open_ms"] <= b["open_ms"] <= hour["close_ms"]]
        assert hour["source"] == "derived"
        assert hour["open"] == inside[0]["open"]
        assert hour["close"] == inside[-1]["close"]
        assert hour["high"] == max(b["high"] for b in inside)
        assert hour["low"] == min(b["low"] for b in inside)

    # Again: nothing new (a final again is a no-op).
    code, out, err = cli(capsys, *argv, "--from", WEEK[0], "--to", WEEK[1])
    assert code == 0, err
    assert summary(out)["stored"] == "0"
    assert summary(out)["revisions"] == "none"

    # The ask file is refused for this bid store, in one line.
    code, _, err = cli(
        capsys, "import", str(shared_data / FXCM_ASK), "--symbol", "GBPUSD",
        "--store", str(store), "--from", WEEK[0], "--to", WEEK[1],
    )  # fmt: skip
    assert code == 2
    assert "ask prices" in err
    assert len(err.strip().splitlines()) == 1


def test_replay_of_a_candle_zip_is_one_line_without_binary_bytes(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(
        capsys, "replay", str(shared_data / FXCM_BID), "--symbol", "GBPUSD",
        "--store", str(tmp_path / "s"),
    )  # fmt: skip
    assert code == 2
    assert "fxconnector import" in err
    assert "PK" not in err
    assert err.isprintable() or err.strip().isprintable()
    assert len(err.strip().splitlines()) == 1


HISTDATA = [
    "20190204 000000;1.145670;1.145720;1.145600;1.145610;0",
    "20190204 000100;1.145610;1.145650;1.145580;1.145640;0",
    "20190204 000200;1.145640;1.145640;1.145500;1.145520;0",
]
BAD_LINE = "20190204 000300;1.145520;1.145400;1.145600;1.145550;0"  # high below low


def write_histdata(path: Path, lines: list[str]) -> Path:
    path.write_text("\r\n".join(lines) + "\r\n")  # HistData ships CRLF lines
    return path


def test_histdata_m1_times_are_est_and_bad_lines_error_or_skip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_histdata(
        tmp_path / "DAT_ASCII_EURUSD_M1_201902.csv", [*HISTDATA[:2], BAD_LINE, HISTDATA[2]]
    )
    store = tmp_path / "ssot"
    base = ["import", str(source), "--symbol", "EURUSD", "--store", str(store)]
    code, _, err = cli(capsys, *base)
    assert code == 2
    assert f"{source}:3: high 1.1454 and low 1.1456 do not contain" in err
    assert len(err.strip().splitlines()) == 1

    code, out, err = cli(capsys, *base, "--on-bad-line", "skip", "--calendar", "always_open")
    assert code == 0, err
    said = summary(out)
    assert said["format"] == "histdata-m1"
    assert said["rows"] == "4"
    assert said["bad_lines"] == "1"
    assert said["stored"] == "3"
    assert f"{source}:3:" in err  # the first skipped line, as a sample
    bars = stored(capsys, store, "EURUSD", "1m")
    # 00:00 EST is 05:00 UTC: 2019-02-04T05:00:00Z = 1549256400000.
    assert [b["open_ms"] for b in bars] == [1_549_256_400_000 + k * 60_000 for k in range(3)]
    assert [b["close"] for b in bars] == [1.14561, 1.14564, 1.14552]

    # The same file zipped is read the same way.
    zipped = tmp_path / "histdata.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.write(source, source.name)
    code, out, err = cli(
        capsys, "import", str(zipped), "--symbol", "EURUSD", "--store", str(store),
        "--on-bad-line", "skip",
    )  # fmt: skip
    assert code == 0, err
    assert summary(out)["stored"] == "0"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not a folder"),
        (b"", "empty file"),
        (b"\x00\x01\x02\xff\xfe binary", "not a text file"),
        (b"ts,bid,ask\n1549256400000,1.1,1.2\n", "not a 1m candle file"),
        ("two-members", "exactly one file"),
        (b"PK\x03\x04 truncated zip", "damaged or unsupported zip"),
        (b"timestamp,open,high,low,close\n2012-01-02 03:09:00+00:00,1.5,1.6\n", ":2: 3 columns"),
        (b"20190204 000000;1.1;1.2;1.0;1.1;0\n20190204 000000;1.1;1.2;1.0;1.1;0\n", "not after"),
        (b"20190204 000030;1.1;1.2;1.0;1.1;0\n", "not on a minute"),
        (b"20190204 000000;1.1;1.2;1.0;nan;0\n", "not finite"),
    ],
)
def test_bad_files_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | str | None, message: str
) -> None:
    path = tmp_path / "candles.csv"
    if content is None:
        path.mkdir()
    elif content == "two-members":
        path = tmp_path / "two.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("a.csv", "x")
            archive.writestr("b.csv", "y")
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
    code, _, err = cli(
        capsys, "import", str(path), "--symbol", "EURUSD", "--store", str(tmp_path / "s")
    )
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "\x00" not in err
