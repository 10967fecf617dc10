"""The execution control socket: a unix socket, owner-only, the only way intents arrive.

Rules:
- Created with umask 077 and chmod 0600: no window in which another user could connect. A
  socket file left by a process killed with SIGKILL is removed on start (the caller holds the
  journal lock, so nobody else serves it).
- Wire: length-prefixed JSON frames (`core.utils.frames`); requests and answers are those of
  `core.model.exec_control`. Several requests may follow one another on one connection; each
  gets one answer, in order. A frame that cannot be read closes the connection after a
  `bad_request` answer (the next frame boundary is lost).
- Until `ready()` (the journal replayed and the gateway reconciled) every request is answered
  `not_ready`: no intent is accepted before the process knows what it already did.
- A bug in the service answers `internal` and is logged with its traceback; the socket keeps
  serving. Every refused request is logged at warning with its code.

This module must not know the order state machine or the risk rules: it hands requests to an
`ExecService` and writes back what it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import traceback
from pathlib import Path
from typing import Any, Protocol

import msgspec

from fxconnector.core.model.exec_control import (
    ControlErrorCode,
    Request,
    error_answer,
)
from fxconnector.core.utils.frames import HEADER_BYTES, FrameError, encode_frame, frame_length

log = logging.getLogger("fxconnector.exec.control")


class ExecService(Protocol):
    """What the control socket serves (the exec process's engine)."""

    async def handle(self, request: Request) -> dict[str, Any]:
        """The answer (`ok_answer`/`error_answer`) to one valid request."""
        ...


class ExecControlServer:
    """Serves the control socket at `path` until closed."""

    def __init__(self, path: Path, service: ExecService) -> None:
        self.path = path
        self._service = service
        self._server: asyncio.AbstractServer | None = None
        self._ready = False

    def ready(self) -> None:
        """From now on requests reach the service."""
        self._ready = True

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        old = os.umask(0o077)  # created owner-only: no window for others
        try:
            self._server = await asyncio.start_unix_server(self._handle, path=str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self.path.unlink(missing_ok=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    header = await reader.readexactly(HEADER_BYTES)
                except asyncio.IncompleteReadError:
                    return  # the client closed the connection between requests
                try:
                    body = await reader.readexactly(frame_length(header))
                    message: Any = msgspec.json.decode(body)
                except (FrameError, msgspec.DecodeError) as exc:
                    await self._answer(writer, error_answer(ControlErrorCode.BAD_REQUEST, str(exc)))
                    return
                await self._answer(writer, await self._dispatch(message))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request: its answer has nobody to go to
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _dispatch(self, message: Any) -> dict[str, Any]:
        try:
            request = msgspec.convert(message, Request)
        except msgspec.ValidationError as exc:
            return error_answer(ControlErrorCode.BAD_REQUEST, f"bad request: {exc}")
        if not self._ready:
            return error_answer(
                ControlErrorCode.NOT_READY,
                "replaying the journal and reconciling with the gateway; try again shortly",
            )
        try:
            return await self._service.handle(request)
        except Exception as exc:  # a bug of ours: answer, log, keep serving
            fields = {"error": repr(exc), "traceback": "".join(traceback.format_exception(exc))}
            log.error("exec.control.internal_error", extra={"fields": fields})
            return error_answer(ControlErrorCode.INTERNAL, f"internal error: {type(exc).__name__}")

    async def _answer(self, writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
        if not answer.get("ok"):
            log.warning("exec.control.refused", extra={"fields": {"error": answer.get("error")}})
        writer.write(encode_frame(answer))
        await writer.drain()
