"""The control channel: a unix socket in the workdir, owner-only, one command per connection.

Protocol (JSON lines): the client sends `{"command": <commands_v1>, "wait": true|false}`; the
server answers with state lines `{"state": "running", "progress": {...}}` ... and one final
line `{"state": "done"|"failed"|"refused"|"accepted", "last_command": {...}, "error": "..."}`.
`refused` is a bad command or a busy runner; `accepted` answers `wait: false`.
Nothing else can command the connector: there is no Redis or HTTP path. A refused request is
logged at warning with its reason (the runner logs every command it runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import msgspec

from fxconnector.core.errors import CommandError
from fxconnector.core.model.status import LastCommand
from fxconnector.core.utils.json_codec import encode
from fxconnector.core.validation.validator import validate_command
from fxconnector.runtime.ingest.commands.runner import CommandRunner

log = logging.getLogger("fxconnector.commands")
SOCKET_NAME = "control.sock"
MAX_REQUEST_BYTES = 64 * 1024


class _Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    command: dict[str, Any]
    wait: bool = True


class ControlServer:
    """Serves the control socket until closed."""

    def __init__(self, path: Path, runner: CommandRunner) -> None:
        self.path = path
        self._runner = runner
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self.path.unlink(missing_ok=True)
        old = os.umask(0o077)  # the socket is created owner-only, with no window for others
        try:
            self._server = await asyncio.start_unix_server(
                self._handle, path=str(self.path), limit=MAX_REQUEST_BYTES
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        self.path.unlink(missing_ok=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # the client went away or sent too much: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        try:
            request = msgspec.json.decode(line, type=_Request)
        except msgspec.DecodeError as exc:
            await _send(writer, {"state": "refused", "error": f"bad request: {exc}"})
            return
        checked = validate_command(request.command)
        if checked.value is None:
            problem = checked.problems[0]
            await _send(
                writer,
                {
                    "state": "refused",
                    "error": f"{problem.code.value}: {problem.message} at {problem.path}",
                },
                request.command,
            )
            return
        if self._runner.busy:
            last = self._runner.last
            running = f"{last.cmd.value} {last.req_id}" if last else "a command"
            await _send(
                writer,
                {"state": "refused", "error": f"busy: {running} is running; try again later"},
                request.command,
            )
            return
        if not request.wait:
            task = asyncio.create_task(self._runner.run(checked.value))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            await _send(writer, {"state": "accepted", "req_id": checked.value.req_id})
            return
        updates: asyncio.Queue[LastCommand] = asyncio.Queue()
        run = asyncio.create_task(self._runner.run(checked.value, updates.put_nowait))
        while not run.done() or not updates.empty():
            getter = asyncio.ensure_future(updates.get())
            await asyncio.wait({getter, run}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                last = getter.result()
                if last.finished_ts is None:
                    await _send(
                        writer,
                        {"state": last.state.value, "progress": msgspec.to_builtins(last.progress)},
                    )
            else:
                getter.cancel()
        try:
            final = run.result()
        except CommandError as exc:
            await _send(writer, {"state": "refused", "error": str(exc)})
            return
        await _send(
            writer, {"state": final.state.value, "last_command": msgspec.to_builtins(final)}
        )


async def _send(
    writer: asyncio.StreamWriter, message: dict[str, Any], command: dict[str, Any] | None = None
) -> None:
    if message.get("state") == "refused":
        fields = {"cmd": (command or {}).get("cmd"), "error": message.get("error")}
        log.warning("command.refused", extra={"fields": fields})
    writer.write(encode(message) + b"\n")
    await writer.drain()
