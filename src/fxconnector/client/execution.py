"""The Python client of `fxconnector exec`: submit intents, ask and cancel orders, switch risk.

Rules:
- It speaks only the control socket's protocol (`core.model.exec_control`, framed JSON) to the
  unix socket of a running exec process (`[execution] socket_path`, default
  `WORKDIR/exec.sock`); it never writes Redis and never uses the HTTP API.
- The intent is validated against `intent_v1` here first (an invalid one never leaves the
  process: ExecRequestError `bad_intent`) and again by the server.
- Exactly once is the server's: `intent_id` is the idempotency key, so submitting the same
  intent again (after a timeout, a crash, a lost answer) returns the existing order, never a
  second one. After a timeout or a dropped connection the outcome is unknown: call
  `submit_intent` again with the same intent, or `order_status`.
- Errors: ExecUnavailable (TransientIOError) when no exec process answers on the socket or
  the answer does not come within `timeout_s`; ExecRequestError (with the server's stable
  `code`) when the request was refused. A risk deny is not an error: it is the answer's
  `decision`.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Final

import msgspec

from fxconnector.core.errors import FxConnectorError, TransientIOError
from fxconnector.core.model.exec_control import (
    PROTOCOL_VERSION,
    ControlErrorCode,
    SubmitResult,
)
from fxconnector.core.model.exec_event import OrderEvent, TradingStateEvent
from fxconnector.core.model.intent import OrderIntent
from fxconnector.core.utils.frames import HEADER_BYTES, decode_body, encode_frame, frame_length
from fxconnector.core.validation.intent import validate_intent

DEFAULT_TIMEOUT_S: Final = 10.0


class ExecUnavailable(TransientIOError):
    """No exec process answered on the control socket (or not in time)."""


class ExecRequestError(FxConnectorError):
    """The exec process refused the request; `code` is a ControlErrorCode value."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ExecClient:
    """One connection to the control socket at `socket_path` (a context manager)."""

    def __init__(self, socket_path: str | Path, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.socket_path = Path(socket_path)
        self._timeout_s = timeout_s
        self._sock: socket.socket | None = None

    def __enter__(self) -> ExecClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self._timeout_s)
        try:
            sock.connect(str(self.socket_path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise ExecUnavailable(
                f"no exec process answers on {self.socket_path} ({exc.strerror}); start it with "
                "`fxconnector exec --config FILE` (or `make run`)"
            ) from None
        except OSError as exc:
            sock.close()
            raise ExecUnavailable(f"cannot connect to {self.socket_path}: {exc}") from None
        self._sock = sock

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request, return its `result` (ExecRequestError when refused)."""
        self.connect()
        assert self._sock is not None
        try:
            self._sock.sendall(encode_frame({"v": PROTOCOL_VERSION, **message}))
            length = frame_length(self._receive(HEADER_BYTES))
            answer = decode_body(self._receive(length))
        except TimeoutError:
            self.close()
            raise ExecUnavailable(
                f"no answer from {self.socket_path} within {self._timeout_s:g} s: the outcome "
                "is unknown; ask again (the same intent_id is never a second order)"
            ) from None
        except OSError as exc:
            self.close()
            raise ExecUnavailable(f"the exec process dropped the connection: {exc}") from None
        if answer.get("ok") is True and isinstance(answer.get("result"), dict):
            result: dict[str, Any] = answer["result"]
            return result
        error: dict[str, Any] = answer.get("error") or {}
        if not isinstance(error, dict):
            error = {}
        raise ExecRequestError(
            str(error.get("code", "bad_answer")), str(error.get("message", answer))
        )

    def _receive(self, size: int) -> bytes:
        assert self._sock is not None
        chunks = bytearray()
        while len(chunks) < size:
            chunk = self._sock.recv(size - len(chunks))
            if not chunk:
                raise ConnectionResetError("the exec process closed the connection")
            chunks += chunk
        return bytes(chunks)

    def submit(self, intent: OrderIntent | dict[str, Any]) -> SubmitResult:
        payload = _intent_payload(intent)
        return msgspec.convert(self.request({"op": "submit", "intent": payload}), SubmitResult)

    def status(self, intent_id: str) -> SubmitResult:
        return msgspec.convert(self.request({"op": "status", "intent_id": intent_id}), SubmitResult)

    def cancel(self, intent_id: str) -> SubmitResult:
        return msgspec.convert(self.request({"op": "cancel", "intent_id": intent_id}), SubmitResult)

    def risk(self, action: str, reason: str) -> TradingStateEvent:
        result = self.request({"op": "risk", "action": action, "reason": reason})
        return msgspec.convert(result["trading_state"], TradingStateEvent)


def _intent_payload(intent: OrderIntent | dict[str, Any]) -> dict[str, Any]:
    checked = validate_intent(
        msgspec.to_builtins(intent) if isinstance(intent, OrderIntent) else intent
    )
    if not checked.ok:
        problem = checked.problems[0]
        raise ExecRequestError(
            ControlErrorCode.BAD_INTENT.value, f"{problem.message} at {problem.path}"
        )
    payload: dict[str, Any] = msgspec.to_builtins(checked.value)
    return payload


def submit_intent(
    intent: OrderIntent | dict[str, Any],
    *,
    socket_path: str | Path,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> SubmitResult:
    """Submit one intent to the exec process at `socket_path` and return its decision and
    order. Safe to repeat with the same intent: the same `intent_id` is never a second order."""
    with ExecClient(socket_path, timeout_s=timeout_s) as client:
        return client.submit(intent)


def order_status(
    intent_id: str, *, socket_path: str | Path, timeout_s: float = DEFAULT_TIMEOUT_S
) -> OrderEvent | None:
    """The order of `intent_id` (None when its intent was denied)."""
    with ExecClient(socket_path, timeout_s=timeout_s) as client:
        return client.status(intent_id).order
