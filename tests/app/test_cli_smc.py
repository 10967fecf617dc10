"""`fxconnector smc` as a user runs it: a real store written by a replay of real ticks."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from fxconnector.app.main import main
from fxconnector.core.model.smc import SmcHint
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.validation.validator import validate_hint
from fxconnector.runtime.store.lock import WriterLock
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from fxconnector.smc import CSV_HEADER, SmcEngine, encode_hint

FROM_MS = 1_549_285_200_000  # 2019-02-04T13:00:00Z


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def day_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EURUSD ticks of Monday 2019-02-04 replayed into a store under fx_ny."""
    root = tmp_path_factory.mktemp("eurusd") / "ssot"
    code = main(
        ["replay", str(shared_data / "dukascopy"), "--symbol", "EURUSD", "--store", str(root)]
    )
    assert code == 0
    return root


def engine_lines(root: Path, tf: Timeframe) -> list[bytes]:
    store = JsonlStore(root)
    store.open()
    try:
        bars = [b.event() for b in store.bars("EURUSD", tf)]
    finally:
        store.close()
    engine = SmcEngine("EURUSD", tf)
    return [encode_hint(h) for bar in bars for h in engine.update(bar)]


@pytest.mark.parametrize("tf", [Timeframe.M1, Timeframe.M5, Timeframe.H1])
def test_smc_prints_the_engines_hints_as_canonical_lines_ordered_by_confirm(
    capsys: pytest.CaptureFixture[str], day_store: Path, tf: Timeframe
) -> None:
    code, out, _ = cli(
        capsys, "smc", "--store", str(day_store), "--symbol", "EURUSD", "--tf", tf.value
    )
    assert code == 0
    lines = out.encode().splitlines()
    assert lines
    assert lines == engine_lines(day_store, tf)
    hints = [msgspec.json.decode(line, type=SmcHint) for line in lines]
    assert all(validate_hint(line).ok for line in lines)
    confirms = [h.confirm_ts for h in hints]
    assert confirms == sorted(confirms)


def test_from_filters_by_confirm_and_to_ends_the_run(
    capsys: pytest.CaptureFixture[str], day_store: Path
) -> None:
    everything = engine_lines(day_store, Timeframe.M1)
    to_ms = FROM_MS + 3_600_000
    code, out, _ = cli(
        capsys,
        "smc",
        "--store",
        str(day_store),
        "--symbol",
        "EURUSD",
        "--tf",
        "1m",
        "--from",
        "2019-02-04T13:00:00Z",
        "--to",
        str(to_ms),
    )
    assert code == 0
    got = out.encode().splitlines()
    expected = [
        line
        for line in everything
        if FROM_MS <= msgspec.json.decode(line, type=SmcHint).confirm_ts < to_ms
    ]
    assert got == expected
    assert got


def test_csv_has_one_row_per_hint(capsys: pytest.CaptureFixture[str], day_store: Path) -> None:
    code, out, _ = cli(
        capsys,
        "smc",
        "--store",
        str(day_store),
        "--symbol",
        "EURUSD",
        "--tf",
        "5m",
        "--format",
        "csv",
    )
    assert code == 0
    rows = out.splitlines()
    assert rows[0] + "\n" == CSV_HEADER
    assert len(rows) - 1 == len(engine_lines(day_store, Timeframe.M5))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--symbol", "eurusd", "--tf", "1m"], "--symbol"),
        (["--symbol", "EURUSD", "--tf", "7m"], "--tf: unknown timeframe"),
        (["--symbol", "EURUSD", "--tf", "1m", "--from", "yesterday"], "--from"),
        (
            ["--symbol", "EURUSD", "--tf", "1m", "--from", "2019-02-05", "--to", "2019-02-04"],
            "--to",
        ),
        (["--symbol", "EURUSD", "--tf", "1m", "--swing-length", "0"], "--swing-length"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], day_store: Path, argv: list[str], message: str
) -> None:
    code, out, err = cli(capsys, "smc", "--store", str(day_store), *argv)
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_a_missing_store_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = cli(
        capsys, "smc", "--store", str(tmp_path / "nope"), "--symbol", "EURUSD", "--tf", "1m"
    )
    assert code == 2
    assert "is not a store folder" in err


def test_a_store_a_running_connector_holds_points_at_api_smc(
    capsys: pytest.CaptureFixture[str], day_store: Path
) -> None:
    holder = WriterLock(day_store)
    holder.acquire()  # what a running connector holds
    try:
        code, out, err = cli(
            capsys, "smc", "--symbol", "EURUSD", "--tf", "15m", "--store", str(day_store)
        )
    finally:
        holder.release()
    assert (code, out) == (2, "")
    assert "is in use" in err
    assert "use its API instead (HTTP /api/smc?symbol=EURUSD&tf=15m for its live hints)" in err
    assert err.count("\n") == 1
