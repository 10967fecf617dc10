"""The ForexConnect bridge as a process: start it, read its pipes, stop it, start it again.

Used by the price feed (`adapter.py`) and the order gateway
(`runtime/execution/gateways/fxcm.py`); what the bridge's lines mean is theirs.

Rules:
- A bridge is `bridge.py` started under the owner's interpreter (`broker.fxcm.python`,
  `[execution.fxcm] python`: the ForexConnect SDK runs only on Python 3.7) with three pipes, in
  `workdir` when given, with `bridge_env`'s environment: the credentials are there, never argv.
- It runs in its own process group, so a terminal's Ctrl-C reaches only the connector, which
  logs the bridge out in order; the bridge never sees it.
- Its first line is its hello, awaited up to a timeout: a bridge of another protocol version is
  a ConfigError (run the bridge.py shipped with the connector); a first line that is not a hello
  is the owner's bad line. A line over `line_limit` is a bad line too, and ends the reading: the
  stream cannot be trusted after it.
- Its stderr is diagnostics: every line, redacted, goes to the owner's log and the last few are
  kept (`stderr_tail`) for the error of a bridge that died, above all one that never started.
- Stopping asks it to log out (`shutdown`) and closes its stdin; a bridge still running after
  `close_timeout_s` is killed.
- A bridge that ended is started again after the owner's `next_delay()` (its capped backoff),
  never while closing or once the owner says to stop; each new process counts in `restarts`.
  The owner may ask for a restart of a running bridge it finds stuck (`request_restart`); a
  request is forgotten when the next bridge starts.
- It logs under its owner's logger and event prefix (`fxcm.bridge`, `fxcm.order_bridge`).

It knows nothing of ticks, history, orders or session states: it moves lines, its owner decodes
them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

import msgspec

from fxconnector.config.secrets import Secret
from fxconnector.core.errors import BrokerDisconnected, ConfigError
from fxconnector.runtime.ingest.broker.fxcm import protocol as wire
from fxconnector.runtime.ingest.broker.fxcm.bridge_env import (
    BRIDGE_PATH,
    bridge_environment,
    redact,
)

_STDERR_TAIL: Final = 20
_STDERR_TAIL_CHARS: Final = 500
#: The lines of a bridge that never started quoted in the error (its traceback, mostly).
_START_TAIL: Final = 8
#: Why a bridge ended, as `handshake` and `relay` say it.
NO_HELLO: Final = "the bridge exited before its hello"
EXITED: Final = "the bridge exited"
OVERSIZED_LINE: Final = "the bridge wrote an oversized line"


class BridgeRunner:
    """Starts bridge processes, all with the same command line, environment and directory, and
    starts them again after a delay when they end."""

    def __init__(
        self,
        *,
        python: str,
        arguments: Sequence[str],
        user: Secret,
        password: Secret,
        closing: asyncio.Event,
        log: logging.Logger,
        event_prefix: str,
        line_limit: int,
        close_timeout_s: float,
        workdir: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        inherit_env: Sequence[str] = (),
    ) -> None:
        self._python = python
        self._arguments = tuple(arguments)
        self._user = user
        self._password = password
        self._closing = closing
        self._log = log
        self._event_prefix = event_prefix
        self._line_limit = line_limit
        self._close_timeout_s = close_timeout_s
        self._workdir = workdir
        self._extra_env = dict(extra_env or {})
        self._inherit_env = tuple(inherit_env)
        self._restart = asyncio.Event()
        #: Why the last restart was asked for.
        self.restart_reason = ""
        #: Bridge processes started after the first one.
        self.restarts = 0

    def __repr__(self) -> str:  # never the credentials
        return f"BridgeRunner(python={self._python!r}, event_prefix={self._event_prefix!r})"

    def redact(self, text: str) -> str:
        """`text` without the credentials' values: for every bridge line logged or raised."""
        return redact(text, self._password, self._user)

    def request_restart(self, reason: str) -> None:
        """Ask for the running bridge to be stopped and a new one started (it is stuck)."""
        self.restart_reason = reason
        self._restart.set()

    async def restart_requested(self) -> None:
        """Return once a restart of the running bridge has been asked for."""
        await self._restart.wait()

    async def start(self) -> BridgeProcess:
        """A new bridge process; raises the OSError of one that cannot be started."""
        process = await asyncio.create_subprocess_exec(
            self._python,
            str(BRIDGE_PATH),
            *self._arguments,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=bridge_environment(self._user, self._password, self._extra_env, self._inherit_env),
            cwd=self._workdir,
            limit=self._line_limit,
            # Its own process group: a terminal's Ctrl-C reaches the connector, which logs
            # the bridge out in order; the bridge never sees it.
            process_group=0,
        )
        return BridgeProcess(
            process,
            closing=self._closing,
            log=self._log,
            event_prefix=self._event_prefix,
            close_timeout_s=self._close_timeout_s,
            line_limit=self._line_limit,
            redact=self.redact,
        )

    async def supervise(
        self,
        run_once: Callable[[], Awaitable[None]],
        *,
        next_delay: Callable[[], float],
        keep_going: Callable[[], bool],
    ) -> None:
        """Run `run_once` (one bridge from start to exit), again after `next_delay()` seconds,
        until closing or `keep_going()` is false. Errors of `run_once` are the caller's."""
        first = True
        while not self._closing.is_set() and keep_going():
            if not first:
                delay_s = next_delay()
                self._log.info(
                    f"{self._event_prefix}.restart", extra={"fields": {"delay_s": delay_s}}
                )
                if not await self._sleep_s(delay_s):
                    break
                self.restarts += 1
            first = False
            self._restart.clear()  # a restart asked of an earlier bridge is done
            await run_once()

    async def _sleep_s(self, delay_s: float) -> bool:
        """Sleep `delay_s` (real time); False when closing first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=delay_s)
        return not self._closing.is_set()


class BridgeProcess:
    """One running bridge: its stdin and stdout, its stderr (logged and tailed), its stop."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        *,
        closing: asyncio.Event,
        log: logging.Logger,
        event_prefix: str,
        close_timeout_s: float,
        line_limit: int,
        redact: Callable[[str], str],
    ) -> None:
        assert process.stdout is not None
        self._process = process
        self._stdout = process.stdout
        self._closing = closing
        self._log = log
        self._event_prefix = event_prefix
        self._close_timeout_s = close_timeout_s
        self._line_limit = line_limit
        self._redact = redact
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)
        self._stderr = asyncio.create_task(self._pump_stderr())

    def __repr__(self) -> str:
        return f"BridgeProcess(pid={self.pid}, returncode={self.returncode})"

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once it has exited, else None."""
        return self._process.returncode

    @property
    def stderr_tail(self) -> tuple[str, ...]:
        """Its last stderr lines (redacted, cut to 500 characters), oldest first."""
        return tuple(self._stderr_tail)

    def exit_detail(self, reason: str) -> str:
        """Why it ended, its exit code and its last stderr lines, on one line."""
        tail = " | ".join(self.stderr_tail[-3:])
        return f"{reason} (exit code {self.returncode})" + (f"; stderr: {tail}" if tail else "")

    def start_error(self, setting: str) -> ConfigError:
        """The error of a bridge that exited before its hello (the interpreter cannot run
        bridge.py): its own last lines say why. `setting` names the interpreter's setting."""
        lines = "\n".join(self.stderr_tail[-_START_TAIL:])
        return ConfigError(
            f"the fxcm bridge exited with code {self.returncode} before its hello ({setting}); "
            + (f"its last lines:\n{lines}" if lines else "it wrote nothing")
        )

    async def handshake(
        self, timeout_s: float, bad_line: Callable[[bytes, object], None]
    ) -> wire.Hello | str:
        """The bridge's hello (logged as `<prefix>.started`), or why there is none (NO_HELLO when
        it exited first). A first line that is not a hello goes to `bad_line`; a hello of another
        protocol raises ConfigError."""
        hello = await self._read_hello(timeout_s)
        if hello is None:
            return "closed" if self._closing.is_set() else "no hello from the bridge in time"
        if not hello:
            return NO_HELLO
        try:
            greeting = wire.decode_message(hello)
        except msgspec.DecodeError as exc:
            bad_line(hello, exc)
            return "the bridge's first line was not a hello"
        if not isinstance(greeting, wire.Hello):
            bad_line(hello, "expected hello first")
            return "the bridge's first line was not a hello"
        check_protocol(greeting)
        fields = {"pid": greeting.pid, "python": greeting.python, "sdk": greeting.sdk}
        self._log.info(f"{self._event_prefix}.started", extra={"fields": fields})
        return greeting

    async def relay(
        self, on_line: Callable[[bytes], None], bad_line: Callable[[bytes, object], None]
    ) -> str:
        """Give each stdout line to `on_line` until EOF (returns EXITED) or a line over the
        limit (given to `bad_line`; returns OVERSIZED_LINE)."""
        while True:
            try:
                line = await self._stdout.readline()
            except ValueError:  # a line over the limit: the stream cannot be trusted now
                bad_line(b"", f"a line longer than {self._line_limit} bytes")
                return OVERSIZED_LINE
            if not line:
                return EXITED
            on_line(line)

    async def send(self, request: wire.Request) -> None:
        """Write one protocol line; BrokerDisconnected when its input is closed."""
        stdin = self._process.stdin
        if stdin is None or stdin.is_closing():
            raise BrokerDisconnected("fxcm bridge input is closed")
        try:
            stdin.write(wire.encode_line(request))
            await stdin.drain()
        except ConnectionError as exc:
            raise BrokerDisconnected(f"fxcm bridge input is closed: {exc}") from None

    async def stop(self) -> None:
        """Ask the bridge to shut down (logout); kill it after `close_timeout_s`."""
        process = self._process
        stdin = process.stdin
        if stdin is not None and not stdin.is_closing():
            if process.returncode is None:
                with contextlib.suppress(ConnectionError, BrokerDisconnected):
                    await self.send(wire.ShutdownRequest())
            stdin.close()
            with contextlib.suppress(ConnectionError):
                await stdin.wait_closed()
        try:
            await asyncio.wait_for(process.wait(), timeout=self._close_timeout_s)
        except TimeoutError:
            self._log.warning(f"{self._event_prefix}.kill", extra={"fields": {"pid": process.pid}})
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def stderr_closed(self) -> None:
        """Wait until its stderr has been read to the end."""
        await asyncio.gather(self._stderr, return_exceptions=True)

    async def _read_hello(self, timeout_s: float) -> bytes | None:
        """The bridge's first line (b"" at EOF); None on timeout or when closing first."""
        line = asyncio.ensure_future(self._stdout.readline())
        closer = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait(
                (line, closer), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (line, closer):
                task.cancel()
            await asyncio.gather(line, closer, return_exceptions=True)
        if line.cancelled() or line.exception() is not None:
            return None
        return line.result()

    async def _pump_stderr(self) -> None:
        """The bridge's diagnostics, redacted, into the log (and a short tail for errors)."""
        assert self._process.stderr is not None
        stderr = self._process.stderr
        while True:
            try:
                raw = await stderr.readline()
            except ValueError:  # an over-long line: skip what we can
                continue
            if not raw:
                return
            text = self._redact(raw.decode("utf-8", "replace").rstrip())
            if text:
                self._stderr_tail.append(text[:_STDERR_TAIL_CHARS])
                self._log.info(f"{self._event_prefix}.stderr", extra={"fields": {"line": text}})


def check_protocol(hello: wire.Hello) -> None:
    """Raise ConfigError for a bridge that speaks another protocol version than ours."""
    if hello.protocol != wire.PROTOCOL_VERSION:
        raise ConfigError(
            f"fxcm bridge speaks protocol {hello.protocol}, this connector "
            f"{wire.PROTOCOL_VERSION}: run the bridge.py shipped with the connector"
        )
