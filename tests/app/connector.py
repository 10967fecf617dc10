"""`fxconnector run` as a subprocess for end-to-end tests: its own workdir, port, environment.

stdout and stderr go to files beside the workdir; `stop()` sends SIGTERM and returns the exit
code (killing the process, and its embedded Redis, past the bound); `cleanup()` is for tests that
failed before stopping.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import redis

from tests.redis_server import free_port

STOP_WITHIN_S = 10.0


class Connector:
    """One `fxconnector run` subprocess."""

    def __init__(
        self,
        workdir: Path,
        *extra: str,
        env: Mapping[str, str] | None = None,
        ready_within_s: float = 20.0,
        port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = free_port() if port is None else port  # a given port: a restart's
        self.base = f"http://127.0.0.1:{self.port}"
        self.ready_within_s = ready_within_s
        self.stop_seconds = 0.0
        self.log_path = workdir.parent / f"{workdir.name}.log"
        self.out_path = workdir.parent / f"{workdir.name}.out"
        self._log = self.log_path.open("w")
        self._out = self.out_path.open("w")
        #: Wall-clock epoch ms just before the launch: the process's clock reads later.
        self.launched_ms = time.time_ns() // 1_000_000
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fxconnector.app.main",
                "run",
                "--workdir",
                str(workdir),
                "--http",
                f"127.0.0.1:{self.port}",
                *extra,
            ],
            stdout=self._out,
            stderr=self._log,
            text=True,
            env=dict(os.environ if env is None else env),
        )

    def wait_ready(self) -> float:
        """Seconds until /api/health/ready answered 200 (AssertionError past the bound)."""
        started = time.monotonic()
        deadline = started + self.ready_within_s
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.tail()
                try:
                    if http.get(f"{self.base}/api/health/ready").status_code == 200:
                        return time.monotonic() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise AssertionError(f"not ready within {self.ready_within_s} s:\n{self.tail()}")

    def announced(self) -> str:
        """What the process printed on stdout (the URL line)."""
        self._out.flush()
        return self.out_path.read_text()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """SIGTERM (or `signum`) and the exit code; `stop_seconds` says how long it took."""
        started = time.monotonic()
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=STOP_WITHIN_S)
        finally:
            self.stop_seconds = time.monotonic() - started
            self._kill_and_close()
        return code

    def kill(self) -> None:
        """SIGKILL, no cleanup at all (the embedded Redis is orphaned, as after a crash)."""
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._close_files()

    def cleanup(self) -> None:
        """After a test that failed before `stop()`: a bounded graceful stop, then kill."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_WITHIN_S)
        self._kill_and_close()

    def _kill_and_close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            # A killed connector cannot stop its embedded redis-server.
            socket_path = self.workdir / "redis" / "redis.sock"
            if socket_path.exists():
                with (
                    contextlib.suppress(redis.RedisError, OSError),
                    redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2) as client,
                ):
                    client.shutdown(nosave=True)
        self._close_files()

    def _close_files(self) -> None:
        for handle in (self._log, self._out):
            if not handle.closed:
                handle.close()

    def output(self) -> str:
        """Everything the process wrote (stdout and its JSON-lines stderr)."""
        for handle in (self._log, self._out):
            if not handle.closed:
                handle.flush()
        return self.out_path.read_text() + self.log_path.read_text()

    def wait_exit(self) -> tuple[int, list[str]]:
        """For a run that ends by itself: its exit code and its stderr lines (bounded wait)."""
        try:
            code = self.proc.wait(timeout=STOP_WITHIN_S * 6)
        finally:
            self._kill_and_close()
        return code, self.log_path.read_text().splitlines()

    def tail(self) -> str:
        return self.output()[-6000:]
