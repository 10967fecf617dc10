"""`fxconnector run --with-exec`: the execution process as a supervised child of the connector.

Rules:
- The child is a full `fxconnector exec` process with the connector's own config flags: its
  own journal lock, socket and state, so it is crash-only on its own (kill -9 of either
  process loses nothing). This module only starts, watches and stops it.
- The child dies with the connector even under SIGKILL (Linux `PR_SET_PDEATHSIG`: SIGTERM, set
  by the child itself at start: `die_with_parent`, no code between fork and exec), so a killed
  connector leaves no orphan holding the journal lock.
- The child runs in its own process group: a terminal's Ctrl-C (SIGINT to the foreground group)
  reaches only the connector, which stops the child itself. Else a Ctrl-C landing while a
  restarted child is still importing would end it with a KeyboardInterrupt traceback, and the
  supervisor would plan a restart during the stop.
- A child that dies (exit 1, a signal) is restarted with capped exponential backoff (1 s
  doubling to 30 s). Exit 0 (it was asked to stop, e.g. SIGINT sent to it alone) and exit 2
  (bad config, a journal another process holds: it will not heal by itself) are logged once
  and not restarted; the connector keeps running either way.
- Stop (the connector stops): SIGTERM, a bounded wait, then SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Final

from fxconnector.app import logs
from fxconnector.config.schema import Config

log = logging.getLogger("fxconnector.exec_child")
_PR_SET_PDEATHSIG: Final = 1
#: Set for the child: the connector's pid (see `die_with_parent`).
PARENT_ENV: Final = "FXCONNECTOR_EXEC_PARENT_PID"
STOP_WITHIN_S: Final = 5.0
BACKOFF_INITIAL_S: Final = 1.0
BACKOFF_MAX_S: Final = 30.0
EXIT_USAGE: Final = 2


def die_with_parent() -> None:
    """In `fxconnector exec`: when started by `supervise` (PARENT_ENV names the connector's
    pid), ask the kernel for SIGTERM when the connector dies, and stop at once when it is
    already gone (it died between the fork and this call)."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not parent.isdigit():
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):
        raise SystemExit(0)


def flags_of(args: argparse.Namespace, config: Config) -> list[str]:
    """The `fxconnector exec` flags that give the child the connector's own config."""
    flags = ["--workdir", config.workdir, "--log-level", args.log_level]
    if args.config is not None:
        flags += ["--config", str(args.config)]
    if args.profile is not None:
        flags += ["--profile", args.profile]
    if args.redis_url is not None:
        flags += ["--redis-url", args.redis_url]
    for setting in args.settings:
        flags += ["--set", setting]
    return flags


def exec_argv(flags: Sequence[str]) -> list[str]:
    """The child's command line: this interpreter running `fxconnector exec FLAGS`."""
    return [sys.executable, "-m", "fxconnector.app.main", "exec", *flags]


async def supervise(flags: Sequence[str]) -> None:
    """Run `fxconnector exec FLAGS` until cancelled, restarting it when it dies."""
    backoff = BACKOFF_INITIAL_S
    while True:
        process = await asyncio.create_subprocess_exec(
            *exec_argv(flags),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=None,  # its announce line and JSON logs go where the connector's go
            stderr=None,
            env={**os.environ, PARENT_ENV: str(os.getpid())},
            process_group=0,  # out of the terminal's Ctrl-C: the connector stops it (SIGTERM)
        )
        logs.emit(log, logging.INFO, "exec_child.started", pid=process.pid)
        try:
            code = await process.wait()
        except asyncio.CancelledError:
            await _stop(process)
            raise
        if code == 0:
            # It was asked to stop (a terminal's Ctrl-C reaches the whole process group): the
            # connector is stopping too.
            logs.emit(log, logging.INFO, "exec_child.stopped", code=code)
            return
        if code == EXIT_USAGE:
            logs.emit(
                log,
                logging.ERROR,
                "exec_child.refused",
                code=code,
                detail="fxconnector exec refused its config or journal (see its line above); "
                "not restarted",
            )
            return
        logs.emit(log, logging.WARNING, "exec_child.exited", code=code, restart_in_s=backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, BACKOFF_MAX_S)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_WITHIN_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
