"""`fxconnector time`: one JSON object, or one line on stderr and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fxconnector.app.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_time_prints_the_bucket_and_market_state(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "time", "--at", "2019-03-08T21:59:00Z", "--tf", "1d")
    assert code == 0
    assert err == ""
    answer = json.loads(out)
    assert list(answer) == [
        "at_ms",
        "tf",
        "open_ms",
        "close_ms",
        "is_open",
        "next_open_ms",
        "next_pause_ms",
        "calendar",
    ]
    assert answer == {
        "at_ms": 1552082340000,
        "tf": "1d",
        "open_ms": 1551996000000,
        "close_ms": 1552082399999,  # Thu 22:00Z .. Fri 21:59:59.999Z
        "is_open": True,
        "next_open_ms": 1552251600000,  # Sun 2019-03-10 21:00Z, after the DST switch
        "next_pause_ms": 1552082400000,  # Fri 22:00Z
        "calendar": "fx_ny",
    }


def test_time_with_symbol_group_and_other_calendar(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "time", "--at", "2019-03-11T21:30:00Z", "--symbol", "XAUUSD")
    assert code == 0
    answer = json.loads(out)
    assert answer["calendar"] == "fx_ny/metals"
    assert answer["is_open"] is False
    code, out, _ = run(
        capsys, "time", "--at", "1552082340000", "--calendar", "utc_00", "--tf", "1d"
    )
    assert json.loads(out)["open_ms"] == 1552003200000  # 2019-03-08T00:00:00Z


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["time", "--at", "yesterday"], "cannot read 'yesterday'"),
        (["time", "--at", "2019-01-01", "--tf", "2m"], "unknown timeframe '2m'"),
        (["time", "--at", "2019-01-01", "--calendar", "mars"], "unknown profile 'mars'"),
        (["time", "--at", "2200-01-01"], "outside 1970-01-01..2100-01-01"),
        (["time"], "--at"),
        (["teleport"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    try:
        code, out, err = run(capsys, *argv)
    except SystemExit as exc:  # argparse's own usage errors
        code, (out, err) = int(exc.code or 0), capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert message in err


def test_console_script_runs_as_a_program() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fxconnector.app.main", "time", "--at", "2019-02-04T00:00:30Z"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["open_ms"] == 1549238400000
