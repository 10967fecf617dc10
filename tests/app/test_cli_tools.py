"""`fxconnector audit` and `fxconnector migrate` as an operator runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fxconnector.app.main import main
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.store.lock import WriterLock
from tests.runtime.store.test_audit import CLEAN_KEYS, replay_into

AUDIT = ("audit", "--calendar", "always_open")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def clean_workdir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir whose store (DIR/ssot, the config default) holds a clean replay."""
    workdir = tmp_path_factory.mktemp("workdir")
    replay_into(shared_data, workdir / "ssot")
    return workdir


@pytest.fixture
def workdir(clean_workdir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(clean_workdir, tmp_path / "workdir"))


def progress_only(stderr: str) -> bool:
    """Not a terminal: stderr holds progress JSON lines only, the last one the whole work."""
    lines = [json.loads(line) for line in stderr.splitlines()]
    return (
        bool(lines)
        and all(x["event"] == "progress" for x in lines)
        and (lines[-1]["done"] == lines[-1]["total"] > 0)
    )


def test_audit_prints_coverage_per_day_and_exits_0(
    clean_workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, *AUDIT, "--workdir", str(clean_workdir))
    assert code == 0, err
    assert progress_only(err)
    lines = out.splitlines()
    assert lines[0] == (
        f"audit store={clean_workdir / 'ssot'} kind=jsonl calendar=always_open symbol=all "
        "range=start..end"
    )
    assert lines[1].split() == ["date", "symbol", "final", "quiet", "missing", "closed"]
    assert [line.split() for line in lines[2:6]] == [
        ["2020-01-01", "EURUSD", "120", "1320", "0", "0"],
        ["2020-01-02", "EURUSD", "241", "1199", "0", "0"],
        ["2013-01-01", "USDJPY", "34", "1406", "0", "0"],
        ["total", "395", "3925", "0", "0"],
    ]
    assert "bars EURUSD: 1m=361 5m=73 15m=25 30m=13 1h=7 4h=3 1d=2" in lines
    assert "problems: none" in lines
    assert lines[-1].startswith("result: ok")


def test_audit_json_is_one_object(clean_workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = clean_workdir / "ssot"
    code, out, _ = cli(capsys, *AUDIT, "--store", str(store), "--symbol", "EURUSD", "--json")
    assert code == 0
    (line,) = out.splitlines()
    report = json.loads(line)
    assert set(report) == {
        "store", "store_kind", "calendar", "symbol", "from", "to", "ok", "series", "coverage",
        "totals", "missing_minutes", "problems_total", "problem_counts", "problems",
    }  # fmt: skip
    assert (report["ok"], report["symbol"], report["store"]) == (True, "EURUSD", str(store))
    assert {s["tf"]: s["keys"] for s in report["series"]} == CLEAN_KEYS
    assert report["coverage"][0] == {
        "date": "2020-01-01",
        "symbol": "EURUSD",
        "final": 120,
        "quiet": 1320,
        "missing": 0,
        "closed": 0,
    }
    assert report["totals"] == {
        "keys": 484, "records": 484, "revised": 0,
        "final": 361, "quiet": 2519, "missing": 0, "closed": 0,
    }  # fmt: skip
    assert (report["problems_total"], report["problem_counts"], report["problems"]) == (0, {}, [])


def test_audit_exits_1_and_names_a_broken_bar(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day_file = workdir / "ssot" / "EURUSD" / "5m" / "2020-01-02.jsonl"
    data = day_file.read_bytes()
    day_file.write_bytes(data + data.split(b"\n")[0] + b"\n")  # a duplicated line
    code, out, _ = cli(capsys, *AUDIT, "--workdir", str(workdir))
    assert code == 1
    assert "problems: 1 (store.duplicate=1)" in out
    assert "  store.duplicate  EURUSD 5m 2020-01-02T00:00:00Z rev=0: rev 0 is stored 2 times" in out
    assert out.splitlines()[-1].startswith("result: FAILED")
    code, out, _ = cli(capsys, *AUDIT, "--workdir", str(workdir), "--json")
    report = json.loads(out)
    assert code == 1
    assert report["ok"] is False
    assert report["problems"] == [
        {
            "rule": "store.duplicate",
            "symbol": "EURUSD",
            "tf": "5m",
            "open_ms": 1_577_923_200_000,
            "open": "2020-01-02T00:00:00Z",
            "rev": 0,
            "message": "rev 0 is stored 2 times",
            "where": "",
        }
    ]


def test_missing_minutes_alone_exit_0(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "ssot" / "USDJPY" / "fetched.jsonl").unlink()  # its quiet minutes become missing
    code, out, _ = cli(capsys, *AUDIT, "--workdir", str(workdir), "--symbol", "USDJPY")
    assert code == 0
    assert "2013-01-01  USDJPY" in out
    # From its first final (22:00) to its last (34 finals over 36 minutes): the 2 minutes
    # between them have neither a bar nor a fetched record. Before and after, nothing was asked.
    assert out.splitlines()[-1] == (
        "result: ok: every invariant holds; missing minutes: 2 (reported, not an invariant failure)"
    )
    code, out, _ = cli(capsys, "audit", "--help")
    assert code == 0
    assert "Missing minutes are reported but" in " ".join(out.split())


def test_audit_of_a_sqlite_store(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = replay_into(shared_data, tmp_path / "sq", "sqlite")
    capsys.readouterr()  # the replay's own summary lines
    code, out, _ = cli(capsys, *AUDIT, "--store", str(root), "--store-kind", "sqlite", "--json")
    assert code == 0
    assert json.loads(out)["totals"]["final"] == 395


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--calendar", "fx_ny"], "--calendar fx_ny contradicts store"),
        (["--symbol", "eurusd"], "--symbol: 'eurusd' is not a symbol"),
        (["--from", "yesterday"], "--from: cannot read 'yesterday'"),
        (["--from", "2020-01-02", "--to", "2020-01-01"], "--to must be after --from"),
        (["--store-kind", "sqlite"], "--store-kind sqlite contradicts store"),
    ],
)
def test_audit_bad_usage_exits_2_with_one_line(
    clean_workdir: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "audit", "--workdir", str(clean_workdir), *argv)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert message in err


def test_audit_usage_errors_from_argparse_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "audit", "--workdir", "a", "--store", "b")
    assert code == 2
    assert "not allowed with argument" in err
    code, _, err = cli(capsys, "audit", "--store", str(tmp_path / "none"))
    assert code == 2
    assert "no jsonl store at" in err


def test_a_held_lock_says_the_connector_is_running(
    clean_workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = clean_workdir / "ssot"
    holder = WriterLock(store)
    holder.acquire()  # what a running connector holds
    try:
        code, out, err = cli(capsys, *AUDIT, "--store", str(store))
        assert (code, out) == (2, "")
        assert "held by pid" in err
        assert "A running connector holds it; use its API instead (HTTP /api/bars" in err
        assert "or stop the connector first" in err
        code, out, err = cli(
            capsys, "migrate", "--store", str(store), "--to", str(tmp_path / "sq"),
            "--from-kind", "jsonl", "--to-kind", "sqlite",
        )  # fmt: skip
        assert (code, out) == (2, "")
        assert "running connector" in err
    finally:
        holder.release()


def bars_output(
    capsys: pytest.CaptureFixture[str], store: Path, kind: str, symbol: str, tf: Timeframe
) -> str:
    code, out, _ = cli(
        capsys, "bars", "--symbol", symbol, "--tf", tf.value, "--store", str(store),
        "--store-kind", kind,
    )  # fmt: skip
    assert code == 0
    return out


def test_migrate_there_and_back_prints_one_summary(
    clean_workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite_root, back = tmp_path / "sqlite", tmp_path / "back"
    code, out, err = cli(
        capsys, "migrate", "--workdir", str(clean_workdir), "--from-kind", "jsonl",
        "--to", str(sqlite_root), "--to-kind", "sqlite", "--calendar", "always_open",
    )  # fmt: skip
    assert code == 0, err
    assert progress_only(err)
    (line,) = out.splitlines()
    assert line.startswith(
        f"migrate from=jsonl:{clean_workdir / 'ssot'} to=sqlite:{sqlite_root} series=14 "
        "keys=534 records=534 revised=0 fetched=2 audit_problems=0 differences=0 verified=yes"
    )
    code, out, err = cli(
        capsys, "migrate", "--store", str(sqlite_root), "--from-kind", "sqlite",
        "--to", str(back), "--to-kind", "jsonl",
    )  # fmt: skip
    assert code == 0, err
    assert progress_only(err)
    assert "verified=yes" in out
    # No --calendar: the copy's manifest says always_open, so its 4h/1d grid audits clean.
    assert "audit_problems=0" in out
    for symbol in ("EURUSD", "USDJPY"):
        for tf in (Timeframe(t) for t in CLEAN_KEYS):
            original = bars_output(capsys, clean_workdir / "ssot", "jsonl", symbol, tf)
            assert original
            assert bars_output(capsys, sqlite_root, "sqlite", symbol, tf) == original
            assert bars_output(capsys, back, "jsonl", symbol, tf) == original


def test_migrate_refuses_a_non_empty_destination_with_exit_2(
    clean_workdir: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(
        capsys, "migrate", "--workdir", str(clean_workdir), "--from-kind", "jsonl",
        "--to", str(workdir / "ssot"), "--to-kind", "jsonl",
    )  # fmt: skip
    assert (code, out) == (2, "")
    assert (
        f"the destination store {workdir / 'ssot'} is not empty: migrate only into an empty" in err
    )
    code, _, err = cli(
        capsys, "migrate", "--workdir", str(clean_workdir), "--from-kind", "jsonl",
        "--to", str(clean_workdir / "ssot"), "--to-kind", "sqlite",
    )  # fmt: skip
    assert code == 2
    assert "--to must be another folder than the source store" in err


def test_a_corrupt_source_line_is_named_and_the_migration_not_verified(
    workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day_file = sorted((workdir / "ssot" / "EURUSD" / "1m").glob("*.jsonl"))[0]
    lines = day_file.read_bytes().splitlines()
    lines[1] = b"{not json"
    day_file.write_bytes(b"\n".join(lines) + b"\n")
    code, out, err = cli(
        capsys, "migrate", "--workdir", str(workdir), "--from-kind", "jsonl",
        "--to", str(tmp_path / "sqlite"), "--to-kind", "sqlite", "--calendar", "always_open",
    )  # fmt: skip
    assert code == 1
    assert f"fxconnector migrate: unreadable source line skipped: {day_file}:2: " in err
    assert "keys=533 " in out  # every other line copied
    code, _, err = cli(
        capsys, "bars", "--store", str(workdir / "ssot"), "--symbol", "EURUSD", "--tf", "1m"
    )
    assert code == 0
    assert f"fxconnector bars: unreadable store line skipped: {day_file}:2: " in err
