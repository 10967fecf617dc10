"""`fxconnector replay` and `fxconnector bars` as a user runs them, on real data."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from fxconnector.app.main import main
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.coverage import MinuteState, classify, count
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import TIMEFRAMES, Timeframe, to_ms
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.store.ssot_jsonl import JsonlStore

MONTH_FROM = 1_354_485_600_000  # Sun 2012-12-02T22:00:00Z, the week's open
MONTH_TO = 1_356_991_200_000  # Mon 2012-12-31T22:00:00Z, the end of the last trading day
BASE_TFS = [
    Timeframe.M1,
    Timeframe.M5,
    Timeframe.M15,
    Timeframe.M30,
    Timeframe.H1,
    Timeframe.H4,
    Timeframe.D1,
]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def all_bars(root: Path) -> dict[Timeframe, list[dict[str, Any]]]:
    store = JsonlStore(root)
    store.open()
    try:
        return {
            tf: [msgspec.structs.asdict(b) for b in store.bars("GBPJPY", tf)] for tf in BASE_TFS
        }
    finally:
        store.close()


@pytest.fixture(scope="module")
def month_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean replay of GBPJPY December 2012 under fx_ny (the reference for other tests)."""
    root = tmp_path_factory.mktemp("gbpjpy") / "ssot"
    code = main(
        ["replay", str(shared_data / "dukascopy"), "--symbol", "GBPJPY", "--store", str(root)]
    )
    assert code == 0
    return root


@pytest.mark.slow
def test_month_replay_closes_weekends_and_christmas(
    month_store: Path, fx_ny: CalendarProfile
) -> None:
    store = JsonlStore(month_store)
    store.open()
    finals = list(store.bars("GBPJPY", Timeframe.M1))
    opens = np.fromiter((b.open_ms for b in finals), np.int64, len(finals))
    fetched = store.fetched_intervals("GBPJPY", MONTH_FROM, MONTH_TO)
    days = list(store.bars("GBPJPY", Timeframe.D1))
    store.close()
    states = classify(MONTH_FROM, MONTH_TO, fx_ny.default, opens, fetched)
    tally = count(states)
    assert tally.missing == 0
    assert tally.final == len(finals) > 28_000

    def state_at(iso: str) -> MinuteState:
        import datetime as dt

        ts = to_ms(dt.datetime.fromisoformat(iso))
        return MinuteState(states[(ts - MONTH_FROM) // 60_000])

    assert state_at("2012-12-08T12:00:00+00:00") is MinuteState.CLOSED  # Saturday
    assert state_at("2012-12-25T12:00:00+00:00") is MinuteState.CLOSED  # Christmas Day
    assert state_at("2012-12-24T12:00:00+00:00") is MinuteState.FINAL
    # 20 trading days: Dec 3-7, 10-14, 17-21, 24, 26-28, 31 (each opening 22:00 UTC before).
    assert len(days) == 20
    assert all(d.open_ms % 86_400_000 == 22 * 3_600_000 for d in days)


@pytest.mark.slow
def test_kill_minus_9_mid_replay_loses_nothing(
    month_store: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ssot"
    argv = ["replay", str(shared_data / "dukascopy"), "--symbol", "GBPJPY", "--store", str(root)]
    # A month replays in well under a second: acknowledge often enough to be killed mid-way.
    acking = ["--ack-interval", "0.01", "--log-level", "info"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fxconnector.app.main", *argv, *acking],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    acks: list[int] = []
    selector = selectors.DefaultSelector()
    selector.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + 90
    while len(acks) < 2 and time.monotonic() < deadline:
        if selector.select(timeout=1):
            line = proc.stderr.readline()
            if not line:
                break
            record = json.loads(line)
            if record["event"] == "ssot.durable":
                acks.append(record["through_ms"])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert len(acks) == 2, "the replay acknowledged nothing before the deadline"
    acked_through = acks[-1]
    assert MONTH_FROM < acked_through < MONTH_TO, "killed too late to mean anything"

    reference = all_bars(month_store)
    after_crash = all_bars(root)
    # Every acknowledged final is there, identical; nothing is there twice or different.
    acked_1m = [b for b in reference[Timeframe.M1] if b["open_ms"] < acked_through]
    assert after_crash[Timeframe.M1][: len(acked_1m)] == acked_1m
    for tf in BASE_TFS:
        reference_by_open = {b["open_ms"]: b for b in reference[tf]}
        for bar in after_crash[tf]:
            assert bar == reference_by_open[bar["open_ms"]]

    # A torn line (as a crash mid-write leaves) is truncated and reported on the next start.
    newest = max(root.rglob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    with newest.open("ab") as handle:
        handle.write(encode(reference[Timeframe.M1][-1])[:40])
    code, out, err = cli(capsys, *argv, "--log-level", "warning")
    assert code == 0, err
    assert "ssot.torn_tail_truncated" in err
    assert newest.name in err
    assert "revisions=none" in out
    assert all_bars(root) == reference


def test_bars_prints_canonical_lines_in_order(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ssot"
    code, out, err = cli(
        capsys,
        "replay",
        str(shared_data / "dukascopy"),
        "--symbol",
        "EURUSD",
        "--calendar",
        "always_open",
        "--store",
        str(root),
    )
    assert code == 0, err
    assert out.startswith("replay symbol=EURUSD from=2019-02-04T00:00:00Z to=2019-02-05T00:00:00Z")
    assert "ticks=136741 applied=136741 rejected=none late=0" in out
    assert "finals=1m:1440,5m:288,15m:96,30m:48,1h:24,4h:6,1d:1" in out
    code, out, _ = cli(capsys, "bars", "--symbol", "EURUSD", "--tf", "1h", "--store", str(root))
    lines = out.splitlines()
    assert code == 0
    assert len(lines) == 24
    first = json.loads(lines[0])
    assert first["open_ms"] == 1_549_238_400_000
    assert first["close_ms"] == 1_549_241_999_999
    assert first["source"] == "derived"
    assert first["event_ts"] == first["close_ms"]
    assert [json.loads(x)["open_ms"] for x in lines] == sorted(
        json.loads(x)["open_ms"] for x in lines
    )
    # Canonical: decoding into the contract model and encoding again gives the same bytes.
    assert lines[0].encode() == encode(msgspec.json.decode(lines[0], type=OhlcvEvent))
    code, out, _ = cli(
        capsys,
        "bars",
        "--symbol",
        "EURUSD",
        "--tf",
        "1m",
        "--store",
        str(root),
        "--from",
        "2019-02-04T10:00:00Z",
        "--to",
        "2019-02-04T10:05:00Z",
        "--format",
        "csv",
    )
    rows = out.splitlines()  # export's CSV (tests/app/test_cli_export.py)
    assert rows[0].startswith('"symbol","tf","open_ms","close_ms","open","high","low","close"')
    assert len(rows) == 6
    assert rows[1].startswith('"EURUSD","1m",2019-02-04 10:00:00.000Z,2019-02-04 10:00:59.999Z,')
    # A symbol the store does not hold is said, not an empty answer that looks like no bars.
    code, out, err = cli(capsys, "bars", "--symbol", "GBPUSD", "--tf", "1m", "--store", str(root))
    assert (code, out) == (2, "")
    assert f"--symbol: store {root} holds no GBPUSD bars (it holds: EURUSD)" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "/no/such/place", "--symbol", "EURUSD"], "/no/such/place"),
        (
            ["replay", "{data}/truefx/USDJPY_ticks.csv", "--symbol", "USDJPY", "--format", "bi6"],
            "invalid choice",
        ),
        (["replay", "{data}/truefx/USDJPY_ticks.csv", "--symbol", "EURUSD"], "USDJPY"),
        (["replay", "{data}/dukascopy", "--symbol", "XAUUSD"], "XAUUSD"),
        (["replay", "{data}/dukascopy", "--symbol", "eur"], "not a symbol"),
        (
            [
                "replay",
                "{data}/dukascopy",
                "--symbol",
                "EURUSD",
                "--from",
                "2030-01-01",
                "--to",
                "2030-01-02",
            ],
            "no EURUSD ticks",
        ),
        (["replay", "{data}/dukascopy", "--symbol", "EURUSD", "--speed", "fast"], "--speed"),
        (["replay", "{data}/dukascopy", "--symbol", "EURUSD", "--timeframes", "5m"], "1m"),
        (["replay", "{data}/dukascopy", "--symbol", "EURUSD", "--calendar", "mars"], "mars"),
        (["bars", "--symbol", "EURUSD", "--tf", "7m", "--store", "{tmp}"], "7m"),
        (["bars", "--symbol", "EURUSD", "--tf", "1m", "--store", "/no/store"], "/no/store"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str],
    message: str,
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [a.format(data=shared_data, tmp=tmp_path) for a in args]
    if "--store" not in argv:
        argv += ["--store", str(tmp_path / "ssot")]
    code, out, err = cli(capsys, *argv)
    assert code == 2, err
    assert out == ""
    assert err.count("\n") == 1
    assert message in err


def test_every_timeframe_can_be_replayed(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(
        capsys,
        "replay",
        str(shared_data / "truefx" / "USDJPY_ticks.csv"),
        "--symbol",
        "USDJPY",
        "--calendar",
        "always_open",
        "--price",
        "mid",
        "--open-mode",
        "previous_close",
        "--timeframes",
        ",".join(tf.value for tf in TIMEFRAMES),
        "--store",
        str(tmp_path / "ssot"),
    )
    assert code == 0, err
    assert "ticks=1000 applied=1000" in out
    assert "3m:" in out


def test_sqlite_store_gives_the_same_bars(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = []
    for kind in ("jsonl", "sqlite"):
        root = tmp_path / kind
        code, _, err = cli(
            capsys,
            "replay",
            str(shared_data / "histdata" / "quote_tick_data.csv"),
            "--symbol",
            "EURUSD",
            "--calendar",
            "always_open",
            "--store",
            str(root),
            "--store-kind",
            kind,
        )
        assert code == 0, err
        code, out, _ = cli(
            capsys,
            "bars",
            "--symbol",
            "EURUSD",
            "--tf",
            "5m",
            "--store",
            str(root),
            "--store-kind",
            kind,
        )
        assert code == 0
        outputs.append(out)
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == 73  # 2020-01-01 22:00 to 04:00:52 UTC, every 5m traded
