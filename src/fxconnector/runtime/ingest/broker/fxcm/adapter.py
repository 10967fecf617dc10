"""FxcmBroker: the BrokerPort over the fxcm bridge subprocess (DESIGN §10, §14).

Rules:
- The ForexConnect SDK runs only on Python 3.7, so it lives in `bridge.py`, started, read,
  stopped and restarted by `bridge_process.BridgeRunner` under `broker.fxcm.python`, speaking
  protocol 1 (`protocol.py`, docs/fxcm_bridge_protocol.md). Credentials reach the child only
  through its environment (`bridge_env`); secret values are redacted from every bridge line we
  log and every error we raise. The bridge runs in `workdir` when given (the SDK keeps a
  price-history cache in ./History there).
- Session states: CONNECTING while the bridge starts and logs in, CONNECTED once the offers are
  subscribed (`SUBSCRIBED`), DISCONNECTED when the FXCM session is lost or the bridge died,
  STALE when the stream went silent, STOPPED at close or after a fatal error. The bridge itself
  logs in again after a lost session and re-subscribes; this adapter restarts a dead, silent or
  stuck bridge after a capped, jittered `Backoff`, and subscribes again on every start.
- Silence: once subscribed, no tick for `watchdog_silence_s` while some symbol's calendar is
  open → STALE, and the bridge is restarted.
- History: one request in flight. `history_error` (FXCM's text, e.g. "QuotesManager error ...
  errorCode=28") raises BrokerDisconnected, so the caller retries under its budget; no answer in
  `history_timeout_s` (get_history busy-waits and can hang) raises it too and restarts the
  bridge. A result becomes final 1m events at this edge (`protocol.bars_to_events`).
- A line that does not decode is counted in `parse_errors` with a bounded sample, never a reason
  to reconnect. A permanent `fatal` from the bridge (bad credentials, missing SDK, protocol
  mismatch) stops the adapter: `connect()` raises it as ConfigError if it comes while
  connecting, later `ticks()` and `history_1m()` raise it; nothing retries it. So is a first
  bridge that exits before its hello (the interpreter cannot run bridge.py): the error carries
  the last lines of the bridge's own stderr.

It knows nothing of the pipeline, stores or Redis.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import msgspec

from fxconnector.config.schema import FxcmBrokerConfig
from fxconnector.config.secrets import Secrets
from fxconnector.core.builders.spec import BarSpec, PriceSide, VolumeMode
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.errors import (
    BrokerDisconnected,
    ConfigError,
    ContractViolation,
)
from fxconnector.core.model.status import BrokerState
from fxconnector.core.model.tick import Tick
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.ingest.broker.feed import QueueFedBroker
from fxconnector.runtime.ingest.broker.fxcm import protocol as wire
from fxconnector.runtime.ingest.broker.fxcm.bridge_env import PASSWORD_ENV, USER_ENV
from fxconnector.runtime.ingest.broker.fxcm.bridge_process import (
    NO_HELLO,
    BridgeProcess,
    BridgeRunner,
)
from fxconnector.runtime.ingest.broker.port import HistoryAnswer, RejectedCandle
from fxconnector.runtime.ingest.broker.resilience import Backoff, Watchdog

log = logging.getLogger(__name__)

_CREDENTIALS_HINT: Final = (
    f"set {USER_ENV} and {PASSWORD_ENV}, or fxcm_user and fxcm_password in the secrets file"
)
_LINE_LIMIT: Final = 32 * 1024 * 1024  # a long history answer is one line
_TICK_BUFFER: Final = 100_000
_SESSION_BUFFER: Final = 1_000
_ERROR_SAMPLES: Final = 20
_LOUD_PARSE_ERRORS: Final = 10
_LOG_LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class FxcmBroker(QueueFedBroker):
    """FXCM ForexConnect behind the BrokerPort, through the bridge subprocess."""

    kind = "fxcm"

    def __init__(
        self,
        config: FxcmBrokerConfig,
        secrets: Secrets,
        symbols: Sequence[str],
        calendars: Mapping[str, TradingCalendar],
        clock: Clock,
        bridge_env: Mapping[str, str] | None = None,
        watchdog_silence_s: float = 30.0,
        *,
        spec: BarSpec | None = None,
        backoff: Backoff | None = None,
        connect_timeout_s: float = 60.0,
        hello_timeout_s: float = 30.0,
        history_timeout_s: float = 120.0,
        close_timeout_s: float = 10.0,
        history_chunk_mins: int = 240,
        bridge_backoff_base_s: float = 1.0,
        bridge_backoff_cap_s: float = 60.0,
        workdir: Path | None = None,
    ) -> None:
        user, password = secrets.fxcm_user, secrets.fxcm_password
        if user is None or password is None or not user.reveal().strip() or not password.reveal():
            raise ConfigError(f"FXCM needs credentials: {_CREDENTIALS_HINT}")
        spec = spec if spec is not None else BarSpec()
        if spec.price is PriceSide.MID:
            raise ConfigError(
                "FXCM history has bid and ask candles only: set bars.price to bid/ask"
            )
        if spec.volume is VolumeMode.SIZE:
            raise ConfigError("FXCM sends no trade sizes (its Volume is a tick count): bars.volume")
        if not symbols:
            raise ConfigError("fxcm broker needs at least one symbol: fix broker.symbols")
        timeouts = {
            "watchdog_silence_s": watchdog_silence_s,
            "connect_timeout_s": connect_timeout_s,
            "hello_timeout_s": hello_timeout_s,
            "history_timeout_s": history_timeout_s,
            "close_timeout_s": close_timeout_s,
            "bridge_backoff_base_s": bridge_backoff_base_s,
            "bridge_backoff_cap_s": bridge_backoff_cap_s,
        }
        for name, value in timeouts.items():
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"fxcm {name} must be a positive number, not {value}")
        if history_chunk_mins < 1:
            raise ConfigError(f"fxcm history_chunk_mins must be >= 1, not {history_chunk_mins}")
        self._symbols = tuple(dict.fromkeys(symbols))
        for symbol in self._symbols:
            if symbol not in calendars:
                raise ConfigError(f"fxcm broker: no calendar for symbol {symbol!r}")
        self._calendars = tuple(calendars[symbol] for symbol in self._symbols)
        self._config = config
        self._clock = clock
        self._init_feed("fxcm", log, _TICK_BUFFER, _SESSION_BUFFER)
        # the SDK keeps its price-history cache in ./History under the bridge's working directory
        self._workdir = workdir
        self._spec = spec
        self._backoff = backoff if backoff is not None else Backoff()
        self._silence_s = watchdog_silence_s
        self._watchdog = Watchdog(watchdog_silence_s)
        self._connect_timeout_s = connect_timeout_s
        self._hello_timeout_s = hello_timeout_s
        self._history_timeout_s = history_timeout_s
        self._closing = asyncio.Event()
        self._runner = BridgeRunner(
            python=config.python,
            arguments=(
                *("--protocol", str(wire.PROTOCOL_VERSION)),
                *("--url", config.url, "--connection", config.connection),
                *("--chunk-minutes", str(history_chunk_mins)),
                *("--backoff-base-s", repr(bridge_backoff_base_s)),
                *("--backoff-cap-s", repr(bridge_backoff_cap_s)),
            ),
            user=user,
            password=password,
            closing=self._closing,
            log=log,
            event_prefix="fxcm.bridge",
            line_limit=_LINE_LIMIT,
            close_timeout_s=close_timeout_s,
            workdir=workdir,
            extra_env=bridge_env,
        )
        self._history_lock = asyncio.Lock()
        self._pending: dict[str, asyncio.Future[wire.HistoryResult]] = {}
        self._next_request = 0
        self._samples: collections.deque[str] = collections.deque(maxlen=_ERROR_SAMPLES)
        #: The bridge that said hello, to which requests go (None while starting or stopping).
        self._process: BridgeProcess | None = None
        self._ready = asyncio.Event()  # first subscription, a fatal error, or close
        self._subscribed = False
        self._ever_subscribed = False
        self._ever_hello = False
        #: Bridge lines that did not decode, and unusable history answers (never a reconnect).
        self.parse_errors = 0
        #: FXCM sessions established again after the first one (by the bridge or a restart).
        self.reconnects = 0
        #: `history_error` answers.
        self.history_errors = 0
        #: The last `history_error` text (FXCM's own words), for status.
        self.last_history_error = ""

    def __repr__(self) -> str:
        return (
            f"FxcmBroker(connection={self._config.connection!r}, symbols={self._symbols!r}, "
            f"python={self._config.python!r}, state={self._state.value!r})"
        )

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    @property
    def error_samples(self) -> tuple[str, ...]:
        """The last few unreadable lines and bad answers, newest last."""
        return tuple(self._samples)

    @property
    def restarts(self) -> int:
        """Bridge processes started after the first one."""
        return self._runner.restarts

    @property
    def bridge_pid(self) -> int | None:
        """The running bridge's process id (None between bridges)."""
        return self._process.pid if self._process is not None else None

    async def connect(self) -> None:
        """Start the bridge and wait (up to `connect_timeout_s`) until the offers are subscribed.

        Raises the fatal error (ConfigError: bad credentials, no SDK under `broker.fxcm.python`,
        protocol mismatch) if it comes first. After the timeout it returns and keeps trying in
        the background (the session events say how it goes). A closed broker cannot connect.
        """
        if self._closed:
            raise BrokerDisconnected("fxcm broker is closed; make a new one to connect again")
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name="fxcm-bridge")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=self._connect_timeout_s)
        if self._fatal is not None:
            raise self._fatal
        if not self._subscribed and not self._closed:
            log.warning(
                "fxcm.connect.slow",
                extra={"fields": {"timeout_s": self._connect_timeout_s, "state": self._state}},
            )

    async def close(self) -> None:
        """Shut the bridge down (logout, exit): `ticks()` and `session_events()` end; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._state is not BrokerState.STOPPED:
            self._set_state(BrokerState.STOPPED, "closed")
        self._put(None)

    async def history_1m(self, symbol: str, from_ms: int, to_ms: int) -> HistoryAnswer:
        """FXCM's final m1 candles with `from_ms <= open_ms < to_ms` that have ended; a bad
        candle rejects itself only."""
        if symbol not in self._symbols:
            known = ", ".join(self._symbols)
            raise ConfigError(f"fxcm broker: unknown symbol {symbol!r} (known: {known})")
        if to_ms <= from_ms:
            return HistoryAnswer([])
        async with self._history_lock:
            result = await self._ask_history(symbol, from_ms, to_ms)
        answer = wire.bars_to_events(
            symbol, result.bars, from_ms, to_ms, now_ms=self._clock.now_ms()
        )
        rejected = [
            *answer.rejected,
            *(
                RejectedCandle(row.open_ms, row.reason, f"fxcm bridge: {row.detail}")
                for row in result.rejected
            ),
        ]
        for candle in rejected:
            self._bad_data(f"{candle.reason}: {candle.detail}")
        unproven = [(a, b) for a, b in result.empty_chunks]
        return HistoryAnswer(answer.bars, rejected, unproven=unproven)

    # -- history -------------------------------------------------------------------------------

    async def _ask_history(self, symbol: str, from_ms: int, to_ms: int) -> wire.HistoryResult:
        if self._fatal is not None:
            raise self._fatal
        process = self._process
        if process is None:
            raise BrokerDisconnected("fxcm bridge is not running (starting or restarting)")
        self._next_request += 1
        request_id = f"h{self._next_request}"
        future: asyncio.Future[wire.HistoryResult] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        request = wire.HistoryRequest(
            id=request_id,
            symbol=symbol,
            from_ms=from_ms,
            to_ms=to_ms,
            price="ask" if self._spec.price is PriceSide.ASK else "bid",
            open_mode=self._spec.open_mode.value,
        )
        try:
            await process.send(request)
            try:
                return await asyncio.wait_for(future, timeout=self._history_timeout_s)
            except TimeoutError:
                reason = (
                    f"history {request_id} got no answer in {self._history_timeout_s:g} s "
                    "(get_history may be stuck busy-waiting)"
                )
                self._runner.request_restart(reason)
                raise BrokerDisconnected(f"fxcm {reason}") from None
        finally:
            self._pending.pop(request_id, None)

    def _answer(self, message: wire.HistoryResult | wire.HistoryError) -> None:
        future = self._pending.get(message.id)
        if future is None or future.done():
            log.info("fxcm.history.late", extra={"fields": {"id": message.id}})
            return
        if isinstance(message, wire.HistoryResult):
            future.set_result(message)
            return
        text = self._redact(message.message)
        self.history_errors += 1
        self.last_history_error = text
        log.warning(
            "fxcm.history.error",
            extra={"fields": {"id": message.id, "symbol": message.symbol, "error": text}},
        )
        future.set_exception(BrokerDisconnected(f"fxcm history {message.symbol} failed: {text}"))

    def _fail_pending(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BrokerDisconnected(f"fxcm bridge stopped: {reason}"))

    # -- the bridge process --------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Run the bridge, restart it after failures, until closed or a fatal error."""
        try:
            await self._runner.supervise(
                self._run_bridge,
                next_delay=self._backoff.next_delay,
                keep_going=lambda: self._fatal is None,
            )
        except Exception as exc:  # our bug: stop loudly rather than loop or hang the iterators
            log.exception("fxcm.supervisor.failed")
            self._fatal = ContractViolation(f"fxcm adapter failed: {exc!r}")
        finally:
            if self._fatal is not None:
                self._set_state(BrokerState.STOPPED, str(self._fatal))
                self._put(None)
            self._ready.set()

    async def _run_bridge(self) -> None:
        """One bridge process from start to exit."""
        self._set_state(BrokerState.CONNECTING, "starting the fxcm bridge")
        try:
            if self._workdir is not None:
                self._workdir.mkdir(parents=True, exist_ok=True)
            process = await self._runner.start()
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            self._fatal = ConfigError(
                f"cannot start the fxcm bridge ({exc.strerror or exc}: {exc.filename!r}); "
                f"check broker.fxcm.python = {self._config.python!r} and the bridge's workdir"
            )
            return
        except OSError as exc:
            self._set_state(BrokerState.DISCONNECTED, f"cannot start the fxcm bridge: {exc}")
            return
        reason = "the bridge stopped"
        try:
            reason = await self._serve(process)
        finally:
            self._process = None
            self._subscribed = False
            self._fail_pending(reason)
            await process.stop()
            await process.stderr_closed()
        if self._fatal is None and not self._closing.is_set():
            if reason == NO_HELLO and not self._ever_hello:
                # It never started: the interpreter cannot run bridge.py. Its own words say
                # why; restarting would only repeat them.
                self._fatal = process.start_error(f"broker.fxcm.python = {self._config.python!r}")
                return
            self._set_state(BrokerState.DISCONNECTED, process.exit_detail(reason))

    async def _serve(self, process: BridgeProcess) -> str:
        """Handshake, subscribe, then relay lines until the bridge ends or must be restarted."""
        try:
            greeting = await process.handshake(self._hello_timeout_s, self._bad_line)
        except ConfigError as exc:  # a bridge of another protocol version
            self._fatal = exc
            return "protocol mismatch"
        if isinstance(greeting, str):
            return greeting  # why there is no hello
        self._process = process
        self._ever_hello = True
        reader = asyncio.create_task(process.relay(self._on_line, self._bad_line))
        with contextlib.suppress(BrokerDisconnected):  # a bridge dying now: the reader sees EOF
            await process.send(wire.SubscribeRequest(symbols=list(self._symbols)))
        stoppers = {
            asyncio.create_task(self._watch()),
            asyncio.create_task(self._closing.wait()),
            asyncio.create_task(self._runner.restart_requested()),
        }
        try:
            await asyncio.wait({reader, *stoppers}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in stoppers:
                task.cancel()
            results = await asyncio.gather(*stoppers, return_exceptions=True)
        if reader.done():
            return reader.result()
        reason = next((r for r in results if isinstance(r, str)), None)
        if reason is None:
            reason = "closed" if self._closing.is_set() else self._runner.restart_reason
        self._process = None  # no new history request goes to a bridge being stopped
        await process.stop()
        await reader  # it drains the rest (logout's session events) until EOF
        return reason

    def _on_line(self, line: bytes) -> None:
        try:
            message = wire.decode_message(line)
        except msgspec.DecodeError as exc:
            self._bad_line(line, exc)
            return
        if isinstance(message, wire.TickMessage):
            now_s = self._clock.now_ms() / 1000
            self._watchdog.data(now_s)
            self._backoff.healthy(now_s)
            self._put(Tick(message.symbol, message.bid, message.ask, message.ts_ms))
        elif isinstance(message, wire.HistoryResult | wire.HistoryError):
            self._answer(message)
        elif isinstance(message, wire.SessionMessage):
            self._on_session(message)
        elif isinstance(message, wire.LogMessage):
            log.log(
                _LOG_LEVELS[message.level],
                "fxcm.bridge.log",
                extra={"fields": {"message": self._redact(message.message)}},
            )
        elif isinstance(message, wire.FatalMessage):
            self._on_fatal(message)
        else:
            self._bad_line(line, "a second hello")

    def _on_session(self, message: wire.SessionMessage) -> None:
        state = wire.SESSION_STATES.get(message.status)
        if state is None:
            self._bad_line(message.status.encode(), "unknown session status")
            return
        detail = f"fxcm {message.status}" + (f": {message.detail}" if message.detail else "")
        if message.status == "SUBSCRIBED":
            if self._ever_subscribed:
                self.reconnects += 1
            self._ever_subscribed = True
            self._subscribed = True
            self._watchdog.data(self._clock.now_ms() / 1000)  # the silence window starts now
            self._ready.set()
        elif state is not BrokerState.CONNECTED:
            self._subscribed = False
        self._set_state(state, self._redact(detail))

    def _on_fatal(self, message: wire.FatalMessage) -> None:
        text = self._redact(message.message)
        log.error("fxcm.bridge.fatal", extra={"fields": {"code": message.code, "error": text}})
        if message.code in wire.PERMANENT_FATAL:
            self._fatal = ConfigError(f"fxcm: {text}")
        # an internal error: the bridge exits and is restarted like any dead bridge

    async def _watch(self) -> str:
        """Returns once a subscribed stream is silent while the market is open."""
        interval_s = min(1.0, self._silence_s / 4)
        while True:
            await asyncio.sleep(interval_s)
            now_ms = self._clock.now_ms()
            market_open = any(calendar.is_open(now_ms) for calendar in self._calendars)
            if self._subscribed and self._watchdog.silent(now_ms / 1000, market_open):
                detail = f"no ticks for {self._silence_s:g} s while the market is open"
                self._set_state(BrokerState.STALE, detail)
                return detail

    # -- small helpers -------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return self._runner.redact(text)

    def _bad_line(self, line: bytes, problem: object) -> None:
        sample = self._redact(line[:200].decode("utf-8", "replace").strip())
        self._bad_data(f"unreadable bridge line ({problem}): {sample!r}")

    def _bad_data(self, message: str) -> None:
        self.parse_errors += 1
        self._samples.append(message)
        level = logging.WARNING if self.parse_errors <= _LOUD_PARSE_ERRORS else logging.DEBUG
        log.log(
            level,
            "fxcm.bad_data",
            extra={"fields": {"error": message, "parse_errors": self.parse_errors}},
        )
