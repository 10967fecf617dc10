"""Stores that describe themselves, as an operator meets them on the command line: every command
takes the store's settings from its manifest, refuses a config or flag that contradicts it (one
line, exit 2, naming both values and the way out), and replay keeps to its own stores.

Each command runs as a real subprocess on real store folders.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from fxconnector.app.main import main
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.store import manifest
from fxconnector.runtime.store.factory import open_store
from fxconnector.runtime.store.manifest import MANIFEST_NAME, StoreIdentity, read_manifest
from tests.app.connector import Connector
from tests.conftest import calendar_profile
from tests.redis_server import free_port
from tests.runtime.store.test_audit import replay_into

TICKS: Final = ("histdata", "quote_tick_data.csv")  # EURUSD, 2020-01-01 22:00Z to 01-02 04:01Z
FX_NY_SIM: Final = '[calendar]\nprofile = "fx_ny"\n\n[broker]\nkind = "sim"\n'


def fxconnector(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fxconnector.app.main", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def refused(done: subprocess.CompletedProcess[str]) -> str:
    """The one stderr line of a refused command (exit 2, nothing on stdout), past the progress
    lines (JSON, off a terminal) of work done before the refusal."""
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    (line,) = [text for text in done.stderr.splitlines() if '"event":"progress"' not in text]
    return line


@pytest.fixture(scope="module")
def replayed(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir whose store holds two replays on always_open (4h/1d on 00:00 UTC)."""
    workdir = tmp_path_factory.mktemp("always_open")
    replay_into(shared_data, workdir / "ssot")
    return workdir


@pytest.fixture
def workdir(replayed: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(replayed, tmp_path / "var"))


def test_audit_takes_the_calendar_from_the_manifest(replayed: Path) -> None:
    done = fxconnector("audit", "--workdir", replayed, cwd=replayed)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0].startswith(
        f"audit store={replayed / 'ssot'} kind=jsonl calendar=always_open"
    )
    assert "problems: none" in done.stdout
    line = refused(fxconnector("audit", "--workdir", replayed, "--calendar", "fx_ny", cwd=replayed))
    assert line == (
        f"fxconnector audit: error: --calendar fx_ny contradicts store {replayed / 'ssot'}: its "
        "manifest.json says always_open; leave --calendar out (the manifest's value is used)"
    )


@pytest.mark.parametrize(
    "command",
    [
        ("run", "--http", "127.0.0.1:{port}"),
        ("cmd", "tail_guard", "--symbols", "EURUSD", "--window-hours", "1"),
    ],
    ids=["run", "cmd-direct"],
)
def test_a_config_on_another_calendar_refuses_to_start(
    command: tuple[str, ...], workdir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "fx_ny.toml"
    config.write_text(FX_NY_SIM)
    argv = [part.format(port=free_port()) for part in command]
    before = sorted(p.name for p in workdir.iterdir())
    line = refused(fxconnector(*argv, "--workdir", workdir, "--config", config, cwd=tmp_path))
    assert line.startswith(f"fxconnector {command[0]}: error: store {workdir / 'ssot'} ")
    assert "calendar.profile is always_open in the store, fx_ny in the config" in line
    assert "another --workdir or [store] path" in line
    assert sorted(p.name for p in workdir.iterdir()) == before  # nothing was started


def test_replay_writes_its_own_store_and_prints_it(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = shared_data.joinpath(*TICKS)
    argv = ("replay", ticks, "--symbol", "EURUSD", "--calendar", "always_open")
    first = fxconnector(*argv, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    own = Path("var") / "replay" / "EURUSD-always_open"
    assert first.stdout.rstrip().endswith(f" store={own}")
    assert not (tmp_path / "var" / "ssot").exists()  # the connector's store is never touched
    made = read_manifest(tmp_path / own)
    assert made is not None
    assert (made.origin, made.calendar, made.symbols) == ("replay", "always_open", ("EURUSD",))
    monkeypatch.chdir(tmp_path)
    assert main([*map(str, argv)]) == 0  # its own store: a second replay may write again
    assert read_manifest(tmp_path / own) == made
    default = fxconnector("replay", ticks, "--symbol", "EURUSD", cwd=tmp_path)
    assert default.stdout.rstrip().endswith(f" store={Path('var') / 'replay' / 'EURUSD-fx_ny'}")


def test_replay_never_makes_a_store_of_a_folder_of_other_files_or_of_a_file(
    shared_data: Path, tmp_path: Path
) -> None:
    """A typo like `--store .` must not turn a folder into a store: one line, exit 2, nothing
    written; an empty folder (or one a crashed creation left with only its lock) is fine."""
    ticks = shared_data.joinpath(*TICKS)
    argv = ("replay", ticks, "--symbol", "EURUSD", "--calendar", "always_open", "--store")
    papers = tmp_path / "papers"
    papers.mkdir()
    (papers / "notes.txt").write_text("mine\n")
    line = refused(fxconnector(*argv, papers, cwd=tmp_path))
    assert f"--store: {papers} holds other files and is not a store (no manifest.json)" in line
    assert sorted(p.name for p in papers.iterdir()) == ["notes.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x\n")
    assert refused(fxconnector(*argv, afile, cwd=tmp_path)) == (
        f"fxconnector replay: error: --store: {afile} is a file, not a store folder"
    )
    for fresh in (tmp_path / "empty", tmp_path / "only-lock"):
        fresh.mkdir()
    (tmp_path / "only-lock" / ".writer.lock").touch()
    for fresh in (tmp_path / "empty", tmp_path / "only-lock"):
        done = fxconnector(*argv, fresh, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert read_manifest(fresh) is not None


def test_replay_into_a_connector_store_needs_append_and_matching_settings(
    shared_data: Path, tmp_path: Path
) -> None:
    root = tmp_path / "var" / "ssot"
    profile = calendar_profile("always_open")
    live = manifest.wanted(
        store_kind="jsonl",
        calendar="always_open",
        profile=profile,
        timeframes=tuple(Timeframe(tf) for tf in ("1m", "5m", "15m", "30m", "1h", "4h", "1d")),
        price="bid",
        open_mode="first_tick",
        volume="ticks",
        symbols=("EURUSD", "GBPUSD", "USDJPY"),
        origin="run",
    )
    store = open_store("jsonl", root, identity=StoreIdentity(live, profile))
    store.open()
    store.close()
    ticks = shared_data.joinpath(*TICKS)
    argv = ("replay", ticks, "--symbol", "EURUSD", "--store", root)
    line = refused(fxconnector(*argv, cwd=tmp_path))
    assert f"store {root} was created by `fxconnector run`, not by a replay" in line
    assert "pass --append" in line
    assert sorted(p.name for p in root.iterdir()) == [".writer.lock", MANIFEST_NAME]
    line = refused(fxconnector(*argv, "--append", "--calendar", "fx_ny", cwd=tmp_path))
    assert f"--calendar fx_ny contradicts store {root}: its manifest.json says always_open" in line
    line = refused(fxconnector(*argv, "--append", "--price", "mid", cwd=tmp_path))
    assert "--price mid contradicts store" in line
    done = fxconnector(*argv, "--append", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "finals=1m:361" in done.stdout
    assert read_manifest(root) == live  # settings taken from it, nothing changed


def test_a_legacy_store_is_refused_then_upgraded_by_the_command_it_names(
    workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = workdir / "ssot"
    (root / MANIFEST_NAME).unlink()  # as every store was before manifests
    line = refused(fxconnector("audit", "--store", root, cwd=tmp_path))
    assert f"run `fxconnector migrate --store {root} --write-manifest`" in line
    assert "(or pass --calendar NAME to use this tool on it as it is)" in line
    assert main(["bars", "--store", str(root), "--symbol", "EURUSD", "--tf", "1m"]) == 2
    upgrade = ("migrate", "--store", root, "--write-manifest")
    line = refused(fxconnector(*upgrade, cwd=tmp_path))
    assert "its bars fit several calendars (always_open, utc_00); say which one" in line
    assert main([*map(str, upgrade), "--calendar", "fx_ny"]) == 2
    assert (
        "contradicts calendar fx_ny: EURUSD 1d bar at 2020-01-01T00:00:00Z"
        in capsys.readouterr().err
    )
    assert not (root / MANIFEST_NAME).exists()
    done = fxconnector(*upgrade, "--calendar", "always_open", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        f"manifest written store={root} kind=jsonl calendar=always_open "
        "timeframes=1m,5m,15m,30m,1h,4h,1d price=bid open_mode=first_tick volume=ticks "
        "symbols=EURUSD,USDJPY bars_checked=534 assumed=price,open_mode inferred=volume "
        "read=timeframes verified=calendar"
    )
    on_disk = json.loads((root / MANIFEST_NAME).read_text())
    assert (on_disk["origin"], on_disk["calendar"]) == ("upgrade", "always_open")
    assert main(["audit", "--store", str(root)]) == 0
    assert main([*map(str, upgrade)]) == 2
    assert "already has its manifest.json" in capsys.readouterr().err


@pytest.mark.slow
def test_the_demo_store_audits_clean_and_refuses_another_profile(tmp_path: Path) -> None:
    """The issue as seen: `audit --workdir var` on a demo store, then the fx profile on it."""
    demo = Connector(tmp_path / "var")
    try:
        demo.wait_ready()
        assert demo.stop() == 0
    finally:
        demo.cleanup()
    audited = fxconnector("audit", "--workdir", "var", cwd=tmp_path)
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert "calendar=always_open" in audited.stdout.splitlines()[0]
    assert "bar.unaligned_open" not in audited.stdout
    http = f"127.0.0.1:{free_port()}"
    argv = ("run", "--workdir", "var", "--profile", "fx", "--http", http)
    line = refused(fxconnector(*argv, cwd=tmp_path))
    assert "calendar.profile is always_open in the store, fx_ny in the config" in line
    assert "another --workdir" in line
