"""Running commands one at a time, with their state and progress for status (DESIGN §9).

Rules: one heavy command at a time per process; a second one is refused with a reason naming
the running one (the caller may retry), never queued invisibly. Every command is validated
against commands_v1 before it runs. `last` is the `last_command` of status: cmd, req_id, state,
start and finish times, result (or error) and progress (done/total). Every command is logged
at info when it starts (command, req_id, arguments) and when it ends (state, result or error,
duration); a refused one at warning with the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from fxconnector.core.errors import CommandError, FxConnectorError
from fxconnector.core.model.command import Command, CommandName
from fxconnector.core.model.status import CommandState, LastCommand, Progress
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.ingest.commands.handlers import CommandContext, execute

log = logging.getLogger("fxconnector.commands")
_MAX_LOGGED_RESULT = 2_000
Listener = Callable[[LastCommand], None]


class CommandRunner:
    """Executes commands against one context; remembers the last one."""

    def __init__(
        self,
        ctx: CommandContext,
        clock: Clock,
        on_duration: Callable[[str, float], None] | None = None,
    ) -> None:
        self._ctx = ctx
        self._clock = clock
        self._on_duration = on_duration
        self.last: LastCommand | None = None
        self._running = False
        self._holder: str | None = None  # heavy work that is not a command (scheduled repair)

    @property
    def busy(self) -> bool:
        return self._running

    async def run(self, command: Command, listener: Listener | None = None) -> LastCommand:
        """Run `command` to its end; the returned state is done or failed."""
        name = CommandName(type(command).__struct_config__.tag)  # type: ignore[arg-type]
        if self._holder is not None:
            raise CommandError(f"busy: {self._holder} is running; try again when it has finished")
        if self._running and self.last is not None:
            reason = (
                f"busy: {self.last.cmd.value} {self.last.req_id} is running; try again when it "
                "has finished"
            )
            _log(logging.WARNING, "command.refused", name, command.req_id, reason=reason)
            raise CommandError(reason)
        self._running = True
        _log(
            logging.INFO,
            "command.started",
            name,
            command.req_id,
            args=msgspec.to_builtins(command.args),
        )
        started = self._clock.now_ms()
        wall = time.monotonic()
        self._set(
            LastCommand(
                cmd=name,
                req_id=command.req_id,
                state=CommandState.RUNNING,
                started_ts=started,
                finished_ts=None,
                result=None,
                progress=Progress(done=0, total=0),
            ),
            listener,
        )

        def progress(done: int, total: int) -> None:
            if self.last is not None:
                self._set(
                    msgspec.structs.replace(self.last, progress=Progress(done=done, total=total)),
                    listener,
                )

        try:
            result: dict[str, Any] = await execute(command, self._ctx, started, progress)
            state = CommandState.DONE
        except FxConnectorError as exc:
            result = {"error": str(exc)}
            state = CommandState.FAILED
        finally:
            self._running = False
        elapsed_s = time.monotonic() - wall
        if self._on_duration is not None:
            self._on_duration(name.value, elapsed_s)
        _log(
            logging.INFO if state is CommandState.DONE else logging.WARNING,
            "command.finished",
            name,
            command.req_id,
            state=state.value,
            result=_bounded(result),
            duration_s=round(elapsed_s, 3),
        )
        assert self.last is not None
        self._set(
            msgspec.structs.replace(
                self.last, state=state, finished_ts=self._clock.now_ms(), result=result
            ),
            listener,
        )
        return self.last

    @contextmanager
    def hold(self, label: str) -> Iterator[None]:
        """Take the one heavy slot for work that is not an operator command (it does not
        become `last`); CommandError when a command or another holder has it."""
        if self._running:
            running = self._holder or (self.last.cmd.value if self.last else "a command")
            raise CommandError(f"busy: {running} is running")
        self._running = True
        self._holder = label
        try:
            yield
        finally:
            self._running = False
            self._holder = None

    def _set(self, last: LastCommand, listener: Listener | None) -> None:
        self.last = last
        if listener is not None:
            listener(last)


def _log(level: int, event: str, name: CommandName, req_id: str, **fields: Any) -> None:
    if log.isEnabledFor(level):
        log.log(level, event, extra={"fields": {"cmd": name.value, "req_id": req_id, **fields}})


def _bounded(result: dict[str, Any]) -> Any:
    """The result as logged: whole when short, else its canonical JSON cut to a bound."""
    text = encode(result).decode()
    if len(text) <= _MAX_LOGGED_RESULT:
        return result
    return text[:_MAX_LOGGED_RESULT] + f"... ({len(text)} chars)"
