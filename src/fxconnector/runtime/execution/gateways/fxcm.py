"""The fxcm gateway: FXCM orders through the ForexConnect bridge (`bridge.py --orders`).

Rules:
- The bridge (docs/fxcm_bridge_protocol.md, `order_*` lines) owns the ForexConnect session; this
  side starts it under `python` through `bridge_process.BridgeRunner` (credentials in its
  environment only, never argv, never logged: every line we log is redacted) and restarts it
  when it exits, after 1 s, then twice as long each time up to `backoff_cap_s`. `start` waits
  until the order tables are subscribed (a permanent `fatal` or a bridge of another protocol
  raises ConfigError); later the bridge logs in again by itself after a lost session.
- The intent id is FXCM's custom id, the idempotency key: the bridge answers a submit whose
  custom id the ORDERS / TRADES / CLOSED_TRADES tables already hold (or whose CreateOrder is in
  flight) with that order, and sends nothing.
- No answer within `request_timeout_s`, an `order_error`, or a bridge that is down or exits
  raises BrokerDisconnected (a TransientIOError): the core makes the order UNKNOWN and queries
  it; nothing here resends. An answer arriving after its timeout is evidence, given to
  `events()`.
- Table updates (`order_report` with an empty id) become evidence on `events()`: accepted,
  filled, rejected, cancelled (`fxcm_wire.to_events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

import msgspec

from fxconnector.config.secrets import Secret
from fxconnector.core.errors import BrokerDisconnected, ConfigError
from fxconnector.execution.messages import GatewayEvent, OrderReport, SubmitOrder
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.execution.gateways import fxcm_wire
from fxconnector.runtime.ingest.broker.fxcm import protocol as wire
from fxconnector.runtime.ingest.broker.fxcm.bridge_env import PASSWORD_ENV, USER_ENV
from fxconnector.runtime.ingest.broker.fxcm.bridge_process import (
    BridgeProcess,
    BridgeRunner,
    check_protocol,
)

log = logging.getLogger(__name__)

_LINE_LIMIT: Final = 4 * 1024 * 1024
_CLOSE_TIMEOUT_S: Final = 10.0
_FIRST_DELAY_S: Final = 1.0
_Answer = wire.OrderReportMessage | wire.OrderErrorMessage
_RequestMaker = Callable[[str], wire.Request]


class FxcmGateway:
    """FXCM's order side behind the `OrderGateway` port."""

    def __init__(
        self,
        *,
        python: str,
        url: str,
        connection: str,
        user: Secret | None,
        password: Secret | None,
        clock: Clock,
        workdir: Path,
        pass_env: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        request_timeout_s: float = 30.0,
        connect_timeout_s: float = 60.0,
        backoff_cap_s: float = 30.0,
    ) -> None:
        if user is None or password is None or not user.reveal().strip() or not password.reveal():
            raise ConfigError(
                f"the fxcm gateway needs credentials: set {USER_ENV} and {PASSWORD_ENV}, or "
                "fxcm_user and fxcm_password in the secrets file"
            )
        self._python = python
        self._closing = asyncio.Event()
        self._runner = BridgeRunner(
            python=python,
            arguments=(
                *("--protocol", str(wire.PROTOCOL_VERSION), "--url", url),
                *("--connection", connection, "--orders"),
            ),
            user=user,
            password=password,
            closing=self._closing,
            log=log,
            event_prefix="fxcm.order_bridge",
            line_limit=_LINE_LIMIT,
            close_timeout_s=_CLOSE_TIMEOUT_S,
            workdir=workdir,
            extra_env=extra_env,
            inherit_env=pass_env,
        )
        self._clock = clock
        self._workdir = workdir
        self._request_timeout_s = request_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._backoff_cap_s = backoff_cap_s
        self._delay_s = _FIRST_DELAY_S
        self._process: BridgeProcess | None = None
        self._pending: dict[str, asyncio.Future[_Answer]] = {}
        self._next = 0
        self._events: asyncio.Queue[GatewayEvent | None] = asyncio.Queue()
        self._ready = asyncio.Event()
        self._fatal: ConfigError | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:  # never the credentials
        return f"FxcmGateway(python={self._python!r}, ready={self._ready.is_set()})"

    @property
    def name(self) -> str:
        return "fxcm"

    @property
    def restarts(self) -> int:
        """Bridge processes started after the first one."""
        return self._runner.restarts

    @property
    def bridge_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the bridge; wait (up to `connect_timeout_s`) for the order tables."""
        self._task = asyncio.create_task(self._supervise(), name="fxcm-order-bridge")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), self._connect_timeout_s)
        if self._fatal is not None:
            await self.close()
            raise self._fatal

    async def close(self) -> None:
        self._closing.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._events.put_nowait(None)

    # -- the port ------------------------------------------------------------------------------

    async def submit(self, order: SubmitOrder) -> OrderReport:
        answer = await self._ask(lambda rid: fxcm_wire.submit_request(rid, order.intent))
        return fxcm_wire.to_report(answer, self._clock.now_ms())

    async def cancel(self, intent_id: str) -> None:
        answer = await self._ask(lambda rid: wire.OrderCancelRequest(id=rid, custom_id=intent_id))
        for event in fxcm_wire.to_events(answer, self._clock.now_ms()):
            self._events.put_nowait(event)

    async def query(self, intent_id: str) -> OrderReport:
        answer = await self._ask(lambda rid: wire.OrderQueryRequest(id=rid, custom_id=intent_id))
        return fxcm_wire.to_report(answer, self._clock.now_ms())

    async def events(self) -> AsyncIterator[GatewayEvent]:
        while True:
            event = await self._events.get()
            if event is None:
                return
            yield event

    async def _ask(self, make: _RequestMaker) -> wire.OrderReportMessage:
        process = self._process
        if process is None or not self._ready.is_set():
            raise BrokerDisconnected("the fxcm bridge is not connected")
        self._next += 1
        request_id = f"o{self._next}"
        future: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await process.send(make(request_id))
            try:
                answer = await asyncio.wait_for(asyncio.shield(future), self._request_timeout_s)
            except TimeoutError:
                raise BrokerDisconnected(
                    f"no answer from FXCM in {self._request_timeout_s:g} s"
                ) from None
        finally:
            if not future.done():
                future.add_done_callback(self._late_answer)
            self._pending.pop(request_id, None)
        if isinstance(answer, wire.OrderErrorMessage):
            raise BrokerDisconnected(self._redact(answer.message))
        return answer

    def _late_answer(self, future: asyncio.Future[_Answer]) -> None:
        """An answer after its caller gave up is still evidence."""
        if future.cancelled() or future.exception() is not None:
            return
        answer = future.result()
        if isinstance(answer, wire.OrderReportMessage) and answer.state != "not_found":
            for event in fxcm_wire.to_events(answer, self._clock.now_ms()):
                self._events.put_nowait(event)

    # -- the bridge process --------------------------------------------------------------------

    async def _supervise(self) -> None:
        await self._runner.supervise(
            self._run_bridge,
            next_delay=self._next_delay,
            keep_going=lambda: self._fatal is None,
        )
        self._ready.set()  # wake a `start` still waiting

    def _next_delay(self) -> float:
        delay_s = self._delay_s
        self._delay_s = min(delay_s * 2, self._backoff_cap_s)
        return delay_s

    async def _run_bridge(self) -> None:
        self._workdir.mkdir(parents=True, exist_ok=True)
        try:
            process = await self._runner.start()
        except OSError as exc:
            self._fatal = ConfigError(
                f"cannot start the fxcm bridge under {self._python!r}: {exc.strerror or exc}"
            )
            return
        self._process = process
        closer = asyncio.create_task(self._closing.wait())
        reader = asyncio.create_task(process.relay(self._on_line, self._line_too_long))
        try:
            await asyncio.wait({reader, closer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closer.cancel()
            self._ready.clear()
            self._process = None
            for future in self._pending.values():
                if not future.done():
                    future.set_result(
                        wire.OrderErrorMessage(
                            id="", custom_id="", message="the fxcm bridge stopped", sent=True
                        )
                    )
            await process.stop()
            reader.cancel()
            await asyncio.gather(reader, closer, return_exceptions=True)
            await process.stderr_closed()

    def _on_line(self, line: bytes) -> None:
        try:
            message = wire.decode_message(line)
        except msgspec.DecodeError as exc:
            sample = self._redact(line[:200].decode("utf-8", "replace"))
            log.warning(
                "fxcm.order_bridge.bad_line",
                extra={"fields": {"error": str(exc), "line": sample}},
            )
            return
        self._on_message(message)

    def _line_too_long(self, _line: bytes, _problem: object) -> None:
        log.error("fxcm.order_bridge.line_too_long")

    def _on_message(self, message: wire.Message) -> None:
        if isinstance(message, wire.OrderReportMessage | wire.OrderErrorMessage):
            future = self._pending.get(message.id) if message.id else None
            if future is not None and not future.done():
                future.set_result(message)
            elif isinstance(message, wire.OrderReportMessage) and message.state != "not_found":
                for event in fxcm_wire.to_events(message, self._clock.now_ms()):
                    self._events.put_nowait(event)
        elif isinstance(message, wire.Hello):
            try:
                check_protocol(message)
            except ConfigError as exc:
                self._fatal = exc
                self._ready.set()
        elif isinstance(message, wire.SessionMessage):
            fields = {"status": message.status, "detail": self._redact(message.detail)}
            log.info("fxcm.order_bridge.session", extra={"fields": fields})
            if message.status == "SUBSCRIBED":
                self._ready.set()
            elif wire.SESSION_STATES.get(message.status) is not None and message.status in (
                "SESSION_LOST",
                "DISCONNECTED",
                "LOGIN_RETRY",
            ):
                self._ready.clear()
        elif isinstance(message, wire.FatalMessage):
            text = self._redact(message.message)
            log.error("fxcm.order_bridge.fatal", extra={"fields": {"code": message.code}})
            if message.code in wire.PERMANENT_FATAL:
                self._fatal = ConfigError(f"fxcm: {text}")
                self._ready.set()
        elif isinstance(message, wire.LogMessage):
            fields = {"level": message.level, "message": self._redact(message.message)}
            log.info("fxcm.order_bridge.log", extra={"fields": fields})

    def _redact(self, text: str) -> str:
        return self._runner.redact(text)
