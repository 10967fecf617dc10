"""Submit-to-ack latency of the `fxconnector exec` process through its control socket, on the
paper gateway (issue 15 point 6; `bench_exec` measures the engine alone, in process).

Real parts: the `fxconnector exec` process (subprocess), its control socket, its journal and
the paper books on the real disk (every step fsynced), an embedded Redis holding the last ticks
the paper gateway fills from. The client is the Python client (`ExecClient`, one connection).

- subject: `submit` of a market intent, timed from the request until the answer, which comes
  once the broker's first evidence (paper: accepted) is journaled: risk check, journal fsync,
  paper books fsync, the evidence's journal fsync, the answer;
- baseline, same process, same connection, interleaved round by round: `status` of an intent
  (the socket and frame round trip and a lookup, nothing journaled): the floor under the subject.

Figures: p50 / p99 / max over every submit of `ROUNDS` rounds of `PER_ROUND`, and the median of
the rounds' p99 with its min-max. Run alone with `python -m bench.bench_exec_socket`, or in `make
bench` (the row's ratio is the baseline's median p99 / the submit's: < 1, the cost of
durability over the bare round trip).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

import redis as redis_client

from bench.runner import Row
from fxconnector.client.execution import ExecClient, ExecRequestError, ExecUnavailable
from fxconnector.core.model.tick import Tick
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish.embedded import EmbeddedRedis
from fxconnector.runtime.publish.keys import SurfaceKeys

ROUNDS: Final = 7
PER_ROUND: Final = 100
NAMESPACE: Final = "fxbench"
CONFIG: Final = f"""
[surface]
namespace = "{NAMESPACE}"

[execution]
gateway = "paper"
max_price_age_ms = 3600000

[execution.traders.bench]
max_orders_per_minute = 100000

[execution.traders.bench.symbols.EURUSD]
max_units_per_order = 1000
max_open_units = 100000000
max_notional = 1e12
max_daily_loss = 1e12
"""


def _stats(samples_ms: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples_ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99, ordered[-1]


def _wait_ready(socket_path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fxconnector exec exited with {proc.returncode}")
        try:
            with ExecClient(socket_path, timeout_s=2) as client:
                client.status("bench-probe")
        except ExecRequestError as exc:
            if exc.code == "unknown_intent":
                return
        except ExecUnavailable:
            pass
        time.sleep(0.05)
    raise RuntimeError("fxconnector exec did not become ready within 30 s")


def measure() -> tuple[list[list[float]], list[list[float]]]:
    """Per round: the submits' latencies and the status round trips' (ms)."""
    with tempfile.TemporaryDirectory(prefix="fxbench-exec-") as tmp:
        root = Path(tmp)
        redis = EmbeddedRedis(root / "redis")
        redis.start()
        try:
            now = time.time_ns() // 1_000_000
            tick = encode(Tick("EURUSD", 1.1, 1.1002, now))
            with redis_client.Redis(unix_socket_path=str(redis.socket_path)) as client:
                client.hset(SurfaceKeys(NAMESPACE).price_tik, "EURUSD", tick)
            config = root / "bench.toml"
            config.write_text(CONFIG)
            workdir = root / "var"
            command = [sys.executable, "-m", "fxconnector.app.main", "exec", "--config"]
            command += [str(config), "--workdir", str(workdir), "--redis-url", redis.url]
            command += ["--log-level", "warning"]
            proc = subprocess.Popen(  # noqa: S603 - this interpreter, our arguments
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ)
            )
            try:
                socket_path = workdir / "exec.sock"
                _wait_ready(socket_path, proc)
                return _rounds(socket_path)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
        finally:
            redis.stop()


def _rounds(socket_path: Path) -> tuple[list[list[float]], list[list[float]]]:
    submits: list[list[float]] = []
    statuses: list[list[float]] = []
    with ExecClient(socket_path) as client:
        serial = 0

        def submit_once() -> float:
            nonlocal serial
            serial += 1
            intent = {
                "intent_id": f"bench-{serial}",
                "trader": "bench",
                "symbol": "EURUSD",
                "side": "buy" if serial % 2 else "sell",
                "units": 1000,
                "type": "market",
                "ts": time.time_ns() // 1_000_000,
            }
            started = time.perf_counter()
            answer = client.submit(intent)
            took = (time.perf_counter() - started) * 1000
            if answer.order is None or answer.order.state.value in ("NEW", "SUBMITTED"):
                raise RuntimeError(f"no ack within the wait: {answer}")
            return took

        def status_once() -> float:
            started = time.perf_counter()
            client.status("bench-1")
            return (time.perf_counter() - started) * 1000

        submit_once()  # warm-up (and the intent status_once asks about)
        status_once()
        for index in range(ROUNDS):  # which goes first alternates round by round
            if index % 2 == 0:
                submits.append([submit_once() for _ in range(PER_ROUND)])
                statuses.append([status_once() for _ in range(PER_ROUND)])
            else:
                statuses.append([status_once() for _ in range(PER_ROUND)])
                submits.append([submit_once() for _ in range(PER_ROUND)])
    return submits, statuses


def _print(submits: list[list[float]], statuses: list[list[float]]) -> None:
    p50, p99, top = _stats([x for r in submits for x in r])
    b50, b99, btop = _stats([x for r in statuses for x in r])
    p99s = sorted(_stats(r)[1] for r in submits)
    b99s = sorted(_stats(r)[1] for r in statuses)
    print(
        f"exec submit->ack (paper), {ROUNDS} rounds of {PER_ROUND}:\n"
        f"  submit p50 {p50:6.2f} p99 {p99:6.2f} max {top:6.2f} ms; p99 per round median "
        f"{statistics.median(p99s):.2f} [{p99s[0]:.2f}-{p99s[-1]:.2f}]\n"
        f"  status p50 {b50:6.2f} p99 {b99:6.2f} max {btop:6.2f} ms; p99 per round median "
        f"{statistics.median(b99s):.2f} [{b99s[0]:.2f}-{b99s[-1]:.2f}]"
    )
    sys.stdout.flush()


def run() -> list[Row]:
    submits, statuses = measure()
    _print(submits, statuses)
    subject_p99 = statistics.median(_stats(r)[1] for r in submits)
    baseline_p99 = statistics.median(_stats(r)[1] for r in statuses)
    return [
        Row(
            "exec process submit->ack p99 (socket, paper)",
            1,
            "acks",
            subject_p99 / 1000,
            "status round trip p99",
            baseline_p99 / 1000,
        )
    ]


if __name__ == "__main__":
    _print(*measure())
