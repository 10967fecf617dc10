"""`kill -9` of `fxconnector run` and `fxconnector replay` at random moments (issue 11 p7).

Each trial starts the real command (forked from a pre-imported interpreter, tests/zygote.py, so
fifty trials do not pay fifty imports), SIGKILLs it after a moment drawn from a seeded RNG, and
checks what a restart finds:
- 0 lost acknowledged finals. `run`: every final on the Redis surface (the events stream read
  after the kill: nothing can be added once the process is dead) is in the store, same bar, same
  or later revision. `replay`: every 1m final before the last `ssot.durable` through_ms it logged
  is in the store, equal to a clean replay's.
- 0 corrupt lines: the store's recovery (`open()`) reports none (a torn tail is cut, counted).
- Nothing different: every stored bar equals the clean reference (replay), no revision appears.
- Audit clean: after each chain of trials a restart runs to its end and `fxconnector audit`
  exits 0.

Moments are drawn over [0, 1.5 x the time a calibration run takes to be ready / to finish], so
kills land in start-up, catch-up, writing and idle alike on a fast or a slow machine. Figures are
printed (`pytest -s`): trials, acknowledged finals checked, losses, corrupt lines, torn tails.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from fxconnector.app.main import main
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils import json_codec
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.store.factory import StoreKind, open_store
from tests.redis_server import RedisServer, free_port
from tests.zygote import Zygote

TRIALS = int(os.environ.get("FXCONNECTOR_CRASH_TRIALS", "50"))
CHAIN = 5  # trials on one workdir before a fresh one (restarts resume, fresh ones catch up)
SEED = 20261203
KINDS: tuple[StoreKind, ...] = ("jsonl", "sqlite")


@dataclass
class Figures:
    trials: int = 0
    acknowledged_checked: int = 0
    lost: int = 0
    corrupt_lines: int = 0
    torn_tails: int = 0
    killed_before_any_ack: int = 0
    audits: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self, what: str) -> str:
        return (
            f"{what}: trials={self.trials} acknowledged_finals_checked={self.acknowledged_checked} "
            f"lost={self.lost} corrupt_lines={self.corrupt_lines} torn_tails={self.torn_tails} "
            f"killed_before_any_ack={self.killed_before_any_ack} audits_clean={self.audits}"
        )


def _wait_ready(base: str, pid: int, deadline_s: float) -> float:
    started = time.monotonic()
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() - started < deadline_s:
            try:
                if http.get(f"{base}/api/health/ready").status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            os.kill(pid, 0)  # still alive (ProcessLookupError otherwise)
            time.sleep(0.05)
    raise AssertionError(f"not ready within {deadline_s} s")


def _config(path: Path, kind: StoreKind) -> Path:
    path.write_text(
        '[calendar]\nprofile = "always_open"\n'
        '[broker]\nkind = "sim"\nsymbols = ["EURUSD"]\nstartup_lookback_mins = 720\n'
        "history_requests_per_min = 100000\nhistory_chunk_minutes = 60\n"
        f'[store]\nkind = "{kind}"\n'
    )
    return path


def _surface_finals(server: RedisServer) -> list[OhlcvEvent]:
    """Every final a consumer could have seen: the events stream and every snapshot."""
    keys = SurfaceKeys()
    with redis.Redis(host="127.0.0.1", port=server.port) as client:
        entries = client.xrange(keys.events)
        snapshots = [client.hget(key, "bars") for key in client.scan_iter(keys.snapshot_pattern)]
    events = [json_codec.decode(fields[b"event"], OhlcvEvent) for _, fields in entries]
    for raw in snapshots:
        if raw is not None:
            events.extend(json_codec.decode(raw, list[OhlcvEvent]))
    return [event for event in events if event.complete]


def _audit(store: Path, kind: StoreKind, calendar: str) -> int:
    return main(["audit", "--store", str(store), "--store-kind", kind, "--calendar", calendar])


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", KINDS)
def test_kill_9_of_run_at_random_moments(
    kind: StoreKind, tmp_path: Path, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(f"{SEED}-run-{kind}")
    config = _config(tmp_path / "config.toml", kind)
    figures = Figures()
    with Zygote() as zygote:

        def start(workdir: Path) -> tuple[int, str]:
            port = free_port()
            argv = ["run", "--config", str(config), "--workdir", str(workdir)]
            argv += ["--http", f"127.0.0.1:{port}", "--redis-url", redis_server.url]
            out, err = (
                workdir.parent / f"{workdir.name}.out",
                workdir.parent / f"{workdir.name}.err",
            )
            return zygote.spawn(argv, out, err), f"http://127.0.0.1:{port}"

        # Calibration: how long a fresh start takes to be ready (catch-up included).
        pid, base = start(tmp_path / "calibration")
        ready_s = _wait_ready(base, pid, 120)
        os.kill(pid, signal.SIGTERM)
        assert zygote.wait(pid) == 0
        window_s = 1.5 * ready_s

        for chain in range(0, TRIALS, CHAIN):
            workdir = tmp_path / f"chain{chain // CHAIN}"
            redis_server.client().flushall()
            for _ in range(min(CHAIN, TRIALS - chain)):
                pid, _ = start(workdir)
                time.sleep(rng.uniform(0, window_s))
                assert zygote.kill9(pid) == -signal.SIGKILL
                _check_run_trial(workdir / "ssot", kind, _surface_finals(redis_server), figures)
            # A restart runs to the end; then the store is audited clean.
            pid, base = start(workdir)
            _wait_ready(base, pid, 120)
            os.kill(pid, signal.SIGTERM)
            assert zygote.wait(pid) == 0
            assert _audit(workdir / "ssot", kind, "always_open") == 0, capsys.readouterr().out
            capsys.readouterr()
            figures.audits += 1
    with capsys.disabled():
        print("\n" + figures.line(f"kill -9 of run ({kind})"))
    assert figures.problems == []
    assert (figures.lost, figures.corrupt_lines) == (0, 0)


def _check_run_trial(
    root: Path, kind: StoreKind, surface: list[OhlcvEvent], figures: Figures
) -> None:
    figures.trials += 1
    if not surface:
        figures.killed_before_any_ack += 1
    if not root.exists():
        assert not surface
        return
    store = open_store(kind, root)
    report = store.open()
    try:
        figures.torn_tails += len(report.torn_tails)
        figures.corrupt_lines += len(report.corrupt_lines)
        for event in surface:
            stored = store.latest(event.symbol, event.tf, event.open_ms)
            figures.acknowledged_checked += 1
            if stored is None or stored.rev < event.rev:
                figures.lost += 1
                figures.problems.append(f"lost {event}")
            elif stored.rev == event.rev and stored.event() != event:
                figures.problems.append(f"different {event} vs {stored}")
    finally:
        store.close()


# -- replay ------------------------------------------------------------------------------------

DAY_MS = 86_400_000
T0 = 1_709_596_800_000  # 2024-03-05T00:00:00Z, a Tuesday


def _tick_file(path: Path) -> Path:
    """Three trading days (Tue-Thu) of one tick every 5 s, a seeded random walk: long enough
    that most kill moments fall inside the replay, not in its start-up."""
    ts = T0 + np.arange(0, 3 * DAY_MS, 5_000, dtype=np.int64) + 137
    walk = np.random.default_rng(SEED).normal(0, 2e-5, ts.size)
    bid = np.round(1.1 + np.cumsum(walk), 5)
    lines = [
        f"{t},{b:.5f},{b + 0.0002:.5f}" for t, b in zip(ts.tolist(), bid.tolist(), strict=True)
    ]
    path.write_text("ts,bid,ask\n" + "\n".join(lines) + "\n")
    return path


def _all_bars(root: Path, kind: StoreKind) -> dict[tuple[Timeframe, int], OhlcvEvent]:
    store = open_store(kind, root)
    store.open()
    try:
        return {
            (tf, bar.open_ms): bar.event()
            for symbol, tf in store.series()
            for bar in store.bars(symbol, tf)
        }
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", KINDS)
def test_kill_9_of_replay_at_random_moments(
    kind: StoreKind, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(f"{SEED}-replay-{kind}")
    ticks = _tick_file(tmp_path / "ticks.csv")
    figures = Figures()
    with Zygote() as zygote:

        def replay(root: Path, name: str) -> tuple[int, Path]:
            argv = ["replay", str(ticks), "--symbol", "EURUSD", "--store", str(root)]
            argv += ["--store-kind", kind, "--log-level", "info", "--ack-interval", "0.01"]
            err = tmp_path / f"{name}.err"
            return zygote.spawn(argv, tmp_path / f"{name}.out", err), err

        # The reference: one replay run to its end (timed: the window for the kill moments).
        reference_root = tmp_path / "reference"
        started = time.monotonic()
        pid, _ = replay(reference_root, "reference")
        assert zygote.wait(pid) == 0
        window_s = 1.5 * (time.monotonic() - started)
        reference = _all_bars(reference_root, kind)
        assert {bar.rev for bar in reference.values()} == {0}

        for chain in range(0, TRIALS, CHAIN):
            root = tmp_path / f"chain{chain // CHAIN}"
            for trial in range(min(CHAIN, TRIALS - chain)):
                pid, err = replay(root, f"trial{chain + trial}")
                time.sleep(rng.uniform(0, window_s))
                code = zygote.kill9(pid)
                assert code in (-signal.SIGKILL, 0)  # 0: it had already finished
                _check_replay_trial(root, kind, err, reference, figures)
            pid, _ = replay(root, f"finish{chain}")
            assert zygote.wait(pid) == 0
            assert _all_bars(root, kind) == reference
            assert _audit(root, kind, "fx_ny") == 0, capsys.readouterr().out
            capsys.readouterr()
            figures.audits += 1
    with capsys.disabled():
        print("\n" + figures.line(f"kill -9 of replay ({kind})"))
    assert figures.problems == []
    assert (figures.lost, figures.corrupt_lines) == (0, 0)


def _check_replay_trial(
    root: Path,
    kind: StoreKind,
    err: Path,
    reference: dict[tuple[Timeframe, int], OhlcvEvent],
    figures: Figures,
) -> None:
    figures.trials += 1
    acked = [
        record["through_ms"]
        for record in (
            json.loads(line) for line in err.read_text().splitlines() if line.startswith("{")
        )
        if record.get("event") == "ssot.durable"
    ]
    if not acked:
        figures.killed_before_any_ack += 1
    if not root.exists():
        assert not acked
        return
    store = open_store(kind, root)
    report = store.open()
    try:
        figures.torn_tails += len(report.torn_tails)
        figures.corrupt_lines += len(report.corrupt_lines)
        through = max(acked, default=0)
        for tf, open_ms in reference:
            if tf is Timeframe.M1 and open_ms < through:
                figures.acknowledged_checked += 1
                stored = store.latest("EURUSD", tf, open_ms)
                if stored is None:
                    figures.lost += 1
                    figures.problems.append(f"lost acknowledged {tf} {open_ms}")
        for symbol, tf in store.series():
            for stored in store.bars(symbol, tf):
                if reference.get((tf, stored.open_ms)) != stored.event():
                    figures.problems.append(f"stored {stored} differs from the reference")
    finally:
        store.close()
