"""`fxconnector exec` as a subprocess for end-to-end tests, over a real Redis, and a writer of
the surface's last ticks (what the connector publishes) so the paper gateway has prices.

The ticks are stamped with the wall clock because the exec process checks their age against
its own (system) clock; nothing asserts a duration.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from fxconnector.client.execution import ExecClient, ExecRequestError, ExecUnavailable
from fxconnector.core.model.tick import Tick
from fxconnector.core.utils.frames import encode_frame
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish.keys import SurfaceKeys

NAMESPACE = "fxexec"
KEYS = SurfaceKeys(NAMESPACE)
READY_WITHIN_S = 20.0
QUOTES = {"EURUSD": (1.1000, 1.1002), "GBPUSD": (1.3000, 1.3003), "USDJPY": (150.00, 150.02)}

CONFIG = f"""
[surface]
namespace = "{NAMESPACE}"

[execution]
gateway = "paper"
tick_interval_ms = 50
max_price_age_ms = 600000
ack_timeout_ms = 500
query_interval_ms = 200
not_found_grace_ms = 1000

[execution.traders.alice]
max_orders_per_minute = 1000

[execution.traders.alice.symbols.EURUSD]
max_units_per_order = 100000
max_open_units = 100000000
max_notional = 1e12
max_daily_loss = 1e9

[execution.traders.alice.symbols.GBPUSD]
max_units_per_order = 100000
max_open_units = 100000000
max_notional = 1e12
max_daily_loss = 1e9
"""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def write_ticks(client: redis.Redis, keys: SurfaceKeys = KEYS) -> None:
    """The last tick of each symbol, as the connector publishes it (`NS:price_tik`)."""
    now = wall_ms()
    client.hset(
        keys.price_tik,
        mapping={s: encode(Tick(s, bid, ask, now)) for s, (bid, ask) in QUOTES.items()},
    )


def intent(
    intent_id: str, *, units: int = 1000, side: str = "buy", symbol: str = "EURUSD"
) -> dict[str, Any]:
    return {
        "intent_id": intent_id,
        "trader": "alice",
        "symbol": symbol,
        "side": side,
        "units": units,
        "type": "market",
        "ts": wall_ms(),
    }


class ExecRun:
    """One `fxconnector exec` subprocess on `workdir` with the test config."""

    def __init__(self, workdir: Path, redis_url: str, *extra: str, config: str = CONFIG) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir.parent / f"{workdir.name}.toml"
        self.config_path.write_text(config)
        self.socket_path = workdir / "exec.sock"
        self.out_path = workdir.parent / f"{workdir.name}.exec.out"
        self.err_path = workdir.parent / f"{workdir.name}.exec.err"
        self.argv = [
            sys.executable,
            "-m",
            "fxconnector.app.main",
            "exec",
            "--config",
            str(self.config_path),
            "--workdir",
            str(workdir),
            "--redis-url",
            redis_url,
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.out_path.open("ab") as out, self.err_path.open("ab") as err:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err, env=dict(os.environ))

    def wait_ready(self) -> None:
        """Until the socket answers a request (a status of an unknown intent is refused with
        `unknown_intent` once ready; `not_ready` before)."""
        deadline = time.monotonic() + READY_WITHIN_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            assert self.proc.poll() is None, self.tail()
            with contextlib.suppress(ExecUnavailable):
                try:
                    with ExecClient(self.socket_path, timeout_s=2) as client:
                        client.status("no-such-intent")
                except ExecRequestError as exc:
                    if exc.code == "unknown_intent":
                        return
            time.sleep(0.05)
        raise AssertionError(f"exec not ready within {READY_WITHIN_S} s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup at all."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self) -> str:
        return (self.out_path.read_text() + self.err_path.read_text())[-6000:]


def send_then_kill(run: ExecRun, payload: dict[str, Any], delay_s: float) -> None:
    """Send one submit on the control socket and SIGKILL the exec process `delay_s` later,
    whatever it (or its gateway) was doing."""
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(run.socket_path))
        raw.sendall(encode_frame({"v": 1, "op": "submit", "intent": payload}))
        if delay_s:
            raw.settimeout(delay_s)
            with contextlib.suppress(TimeoutError):
                raw.recv(1 << 16)
        run.kill()
