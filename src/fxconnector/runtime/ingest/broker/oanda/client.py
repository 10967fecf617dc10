"""The OANDA v20 broker (DESIGN §10): pricing stream and M1 candles over httpx, behind BrokerPort.

Rules:
- One background task owns the pricing stream. Session states: CONNECTING, CONNECTED, then STALE
  (silence) or DISCONNECTED (error, stream ended), then CONNECTING again; STOPPED at close. Every
  (re)connection subscribes to every instrument again (a reconnect that forgets subscriptions
  leaves silent gaps for hours: nautilus_trader #3733).
- Silence: any line (PRICE or HEARTBEAT) feeds the heartbeat watchdog, checked always (OANDA sends
  a HEARTBEAT every 5 s, market open or not); a PRICE feeds the price watchdog, checked only while
  some symbol's calendar is open. Either one silent for `watchdog_silence_s` → STALE, reconnect.
- Between attempts: capped, jittered `Backoff` (a 429's Retry-After is honoured), and at most 2
  new stream connections per second (`RateGate`, OANDA's limit).
- httpx errors are translated here: transport errors, timeouts and 5xx → BrokerDisconnected
  (retried); 429 → retried later; 401/403 → ConfigError naming the setting to fix, fatal (raised
  from `ticks()` and `history_1m()`, never retried). An unreadable line or candle is BadBrokerData:
  counted in `parse_errors` with a bounded sample, skipped, never a reason to reconnect.
- `history_1m` sends one request at a time (a lock), pages ranges longer than 5000 minutes by
  advancing `from`, never asks past the clock's now, and returns complete candles only.
- The token is revealed only into each request's Authorization header: never kept as text,
  logged, shown in `repr` or put into an exception.

It knows nothing of the pipeline, stores or Redis; the history budget lives elsewhere.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Final

import httpx

from fxconnector.config.schema import OandaBrokerConfig
from fxconnector.config.secrets import Secret
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.errors import (
    BadBrokerData,
    BrokerDisconnected,
    ConfigError,
    FxConnectorError,
    TransientIOError,
)
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.status import BrokerState
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import MINUTE_MS
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.ingest.broker.feed import QueueFedBroker
from fxconnector.runtime.ingest.broker.oanda.parse import (
    ACCOUNT_SETTING,
    TOKEN_SETTING,
    Heartbeat,
    RateLimited,
    Untradeable,
    answer_error,
    error_message,
    format_time,
    instrument_of,
    parse_candles,
    parse_stream_line,
    retry_after_s,
)
from fxconnector.runtime.ingest.broker.port import HistoryAnswer, RejectedCandle
from fxconnector.runtime.ingest.broker.resilience import Backoff, RateGate, Watchdog

log = logging.getLogger(__name__)

#: OANDA answers at most 5000 candles per request.
MAX_CANDLES_PER_REQUEST: Final = 5000
_PAGE_MS: Final = MAX_CANDLES_PER_REQUEST * MINUTE_MS
_REST_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)
#: Tries of one candles request before history_1m gives up (the pipeline retries it later).
_HISTORY_ATTEMPTS: Final = 3
#: The longest one history wait may take (the caller is waiting for the answer).
_HISTORY_WAIT_CAP_S: Final = 10.0
#: The longest a 429's Retry-After may hold the stream back.
_RETRY_AFTER_CAP_S: Final = 60.0
_TICK_BUFFER: Final = 10_000
_SESSION_BUFFER: Final = 256
_ERROR_SAMPLES: Final = 10
#: Unreadable messages logged at WARNING before the rest go to DEBUG (they are counted anyway).
_LOUD_PARSE_ERRORS: Final = 10


class OandaBroker(QueueFedBroker):
    """OANDA v20 behind the BrokerPort: a pricing stream and M1 candles."""

    kind = "oanda"

    def __init__(
        self,
        config: OandaBrokerConfig,
        token: Secret | None,
        symbols: Sequence[str],
        calendars: Mapping[str, TradingCalendar],
        clock: Clock,
        http: httpx.AsyncClient | None = None,
        backoff: Backoff | None = None,
        watchdog_silence_s: float = 10.0,
    ) -> None:
        if token is None or not token.reveal().strip():
            raise ConfigError(f"OANDA needs an API token: {TOKEN_SETTING}")
        if not config.account_id.strip():
            raise ConfigError(f"OANDA needs an account id: set {ACCOUNT_SETTING}")
        for name, url in (("rest_url", config.rest_url), ("stream_url", config.stream_url)):
            if not url.startswith(("https://", "http://")):
                raise ConfigError(f"OANDA {name} {url!r} is not an http(s) URL: fix {name}")
        if not symbols:
            raise ConfigError("oanda broker needs at least one symbol: fix broker.symbols")
        if not (math.isfinite(watchdog_silence_s) and watchdog_silence_s > 0):
            raise ConfigError(f"oanda watchdog_silence_s must be > 0, not {watchdog_silence_s}")
        self._symbols = tuple(dict.fromkeys(symbols))
        self._instruments = {symbol: instrument_of(symbol) for symbol in self._symbols}
        for symbol in self._symbols:
            if symbol not in calendars:
                raise ConfigError(f"oanda broker: no calendar for symbol {symbol!r}")
        self._calendars = tuple(calendars[symbol] for symbol in self._symbols)
        self._config = config
        self._account = config.account_id.strip()
        self._token = token
        self._clock = clock
        self._init_feed("oanda", log, _TICK_BUFFER, _SESSION_BUFFER)
        self._http = http
        self._own_http = http is None
        self._backoff = backoff if backoff is not None else Backoff()
        self._silence_s = watchdog_silence_s
        self._poll_s = min(1.0, watchdog_silence_s / 5)
        self._stream_timeout = httpx.Timeout(10.0, read=3 * watchdog_silence_s)
        self._gate = RateGate(per_second=2)
        self._heartbeat_watchdog = Watchdog(watchdog_silence_s)
        self._price_watchdog = Watchdog(watchdog_silence_s)
        self._history_lock = asyncio.Lock()
        self._last_tick: dict[str, Tick] = {}
        self._samples: collections.deque[str] = collections.deque(maxlen=_ERROR_SAMPLES)
        self._closing = asyncio.Event()
        #: Unreadable stream lines and candle answers (skipped, never a reconnect).
        self.parse_errors = 0
        #: Stream connection attempts after the first one.
        self.reconnects = 0
        #: 429 answers (stream and candles).
        self.rate_limited = 0
        #: PRICE messages with `tradeable: false` (skipped).
        self.not_tradeable = 0
        #: PRICE messages equal to the previous one of their instrument (a reconnect snapshot).
        self.duplicate_prices = 0

    def __repr__(self) -> str:
        return (
            f"OandaBroker(account_id={self._account!r}, symbols={self._symbols!r}, "
            f"price={self._config.price!r}, state={self._state.value!r})"
        )

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    @property
    def error_samples(self) -> tuple[str, ...]:
        """The last few parse errors, newest last."""
        return tuple(self._samples)

    async def connect(self) -> None:
        """Start the pricing stream in the background (CONNECTING, then CONNECTED); idempotent.

        Failures do not raise here: transient ones are retried, a fatal one (401/403) is raised
        from `ticks()`. A closed broker cannot connect again; make a new one.
        """
        if self._closed:
            raise BrokerDisconnected("oanda broker is closed; make a new one to connect again")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="oanda-pricing-stream")

    async def close(self) -> None:
        """Stop the stream: `ticks()` and `session_events()` end (STOPPED); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()  # wakes a history request waiting to retry
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        async with self._history_lock:  # let a running history request finish first
            if self._own_http and self._http is not None:
                await self._http.aclose()
        self._set_state(BrokerState.STOPPED, "closed")
        self._put(None)

    async def history_1m(self, symbol: str, from_ms: int, to_ms: int) -> HistoryAnswer:
        """OANDA's complete M1 candles with `from_ms <= open_ms < to_ms` (and before now)."""
        try:
            instrument = self._instruments[symbol]
        except KeyError:
            known = ", ".join(self._symbols)
            raise ConfigError(f"oanda broker: unknown symbol {symbol!r} (known: {known})") from None
        end_ms = min(to_ms, self._clock.now_ms())  # OANDA refuses a `to` in the future
        events: list[OhlcvEvent] = []
        rejected: list[RejectedCandle] = []
        passed: int | None = None
        unfinished: list[int] = []
        async with self._history_lock:
            page_from = from_ms
            while page_from < end_ms:
                page_to = min(page_from + _PAGE_MS, end_ms)
                body = await self._candles(instrument, page_from, page_to)
                try:
                    page = parse_candles(body, symbol, self._config.price)
                except BadBrokerData as exc:
                    self._bad_data(f"candles {instrument}: {exc}")
                    raise
                for candle in page.rejected:
                    self._bad_data(f"candles {instrument}: {candle.reason}: {candle.detail}")
                # per page, so a `to` that OANDA treats as inclusive cannot give a bar twice
                events.extend(e for e in page.bars if page_from <= e.open_ms < page_to)
                rejected.extend(
                    c for c in page.rejected if c.open_ms is None or c.open_ms < page_to
                )
                unfinished.extend(m for m in page.unfinished if page_from <= m < page_to)
                if page.passed_until_ms is not None:
                    passed = max(passed or 0, page.passed_until_ms)
                page_from = page_to
        return HistoryAnswer(events, rejected, passed, unfinished)

    # -- the pricing stream ------------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, read, reconnect until cancelled; a fatal error ends it (seen by ticks())."""
        try:
            await self._stream_forever()
        except Exception as exc:  # any error, a bug included: ticks() raises it, nothing hangs
            self._fatal = exc
            self._set_state(BrokerState.DISCONNECTED, f"fatal: {exc}")
            log.error("oanda.stream.fatal", extra={"fields": {"error": str(exc)}})
            self._put(None)

    async def _stream_forever(self) -> None:
        attempts = 0
        subscribed = ",".join(self._instruments.values())
        while True:
            if attempts:
                self.reconnects += 1
            attempts += 1
            self._set_state(BrokerState.CONNECTING, subscribed)
            await self._respect_rate_gate()
            try:
                reason = await self._stream_once(subscribed)
            except RateLimited as exc:
                self.rate_limited += 1
                delay_s = self._backoff.next_delay()
                if exc.retry_after_s is not None:
                    delay_s = min(max(delay_s, exc.retry_after_s), _RETRY_AFTER_CAP_S)
                self._set_state(BrokerState.DISCONNECTED, str(exc))
            except TransientIOError as exc:
                delay_s = self._backoff.next_delay()
                self._set_state(BrokerState.DISCONNECTED, str(exc))
            else:
                delay_s = self._backoff.next_delay()
                self._set_state(BrokerState.STALE, reason)
            log.info(
                "oanda.stream.retry",
                extra={"fields": {"delay_s": round(delay_s, 3), "reconnects": self.reconnects}},
            )
            await self._sleep_s(delay_s)

    async def _stream_once(self, subscribed: str) -> str:
        """One stream connection; returns why it went stale, raises why it failed."""
        url = f"{self._config.stream_url.rstrip('/')}/v3/accounts/{self._account}/pricing/stream"
        answered = False
        try:
            async with self._client().stream(
                "GET",
                url,
                params={"instruments": subscribed},
                headers=self._headers(),
                timeout=self._stream_timeout,
            ) as response:
                # counted once OANDA answered: the next openings are spaced from its side too
                self._gate.opened(self._now_s())
                answered = True
                if response.status_code != 200:
                    body = await response.aread()
                    raise self._status_error(response, body, "pricing stream", fatal_4xx=True)
                return await self._consume(response, subscribed)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise translate_httpx_error(exc, "pricing stream", "stream_url") from exc
        finally:
            if not answered:
                self._gate.opened(self._now_s())

    async def _consume(self, response: httpx.Response, subscribed: str) -> str:
        now_s = self._now_s()
        self._heartbeat_watchdog.data(now_s)
        self._price_watchdog.data(now_s)
        self._set_state(BrokerState.CONNECTED, subscribed)
        reader = asyncio.create_task(self._read(response), name="oanda-pricing-reader")
        try:
            while True:
                done, _ = await asyncio.wait({reader}, timeout=self._poll_s)
                if done:
                    reader.result()  # raises: the stream ended or broke
                    raise BrokerDisconnected("OANDA ended the pricing stream")
                reason = self._silence(self._now_s())
                if reason is not None:
                    return reason
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, response: httpx.Response) -> None:
        async for line in response.aiter_lines():
            if line.strip():
                self._on_line(line)
        raise BrokerDisconnected("OANDA ended the pricing stream")

    def _on_line(self, line: str) -> None:
        now_s = self._now_s()
        self._heartbeat_watchdog.data(now_s)
        self._backoff.healthy(now_s)
        try:
            item = parse_stream_line(line)
        except BadBrokerData as exc:
            self._bad_data(str(exc))
            return
        if isinstance(item, Heartbeat):
            return
        self._price_watchdog.data(now_s)
        if isinstance(item, Untradeable):
            self.not_tradeable += 1
            return
        if item.symbol not in self._instruments:
            self._bad_data(f"a price of {item.symbol}, which is not subscribed")
            return
        if self._last_tick.get(item.symbol) == item:
            self.duplicate_prices += 1
            return
        self._last_tick[item.symbol] = item
        self._put(item)

    def _silence(self, now_s: float) -> str | None:
        """Why the stream counts as stale now, or None."""
        if self._heartbeat_watchdog.silent(now_s, market_open=True):
            return f"no message for {self._silence_s:g} s"
        now_ms = self._clock.now_ms()
        if not any(calendar.is_open(now_ms) for calendar in self._calendars):
            self._price_watchdog.data(now_s)  # a closed market owes no prices
            return None
        if self._price_watchdog.silent(now_s, market_open=True):
            return f"no price for {self._silence_s:g} s while the market is open"
        return None

    async def _respect_rate_gate(self) -> None:
        while (wait_s := self._gate.wait_s(self._now_s())) > 0:
            await self._sleep_s(wait_s)

    # -- candles --------------------------------------------------------------------------------

    async def _candles(self, instrument: str, from_ms: int, to_ms: int) -> bytes:
        """One page of candles, retried on 429/5xx/transport errors a bounded number of times."""
        backoff = Backoff(
            base_s=self._backoff.base_s,
            cap_s=min(self._backoff.cap_s, _HISTORY_WAIT_CAP_S),
            rng=self._backoff.rng,
        )
        for attempt in range(1, _HISTORY_ATTEMPTS + 1):
            if self._closed:
                raise BrokerDisconnected("oanda broker is closed")
            try:
                return await self._candles_once(instrument, from_ms, to_ms)
            except RateLimited as exc:
                self.rate_limited += 1
                delay_s = backoff.next_delay()
                if exc.retry_after_s is not None:
                    delay_s = max(delay_s, exc.retry_after_s)
                failure: TransientIOError = exc
            except TransientIOError as exc:
                delay_s = backoff.next_delay()
                failure = exc
            if attempt == _HISTORY_ATTEMPTS:
                raise BrokerDisconnected(
                    f"OANDA candles for {instrument}: gave up after {attempt} tries: {failure}"
                ) from failure
            delay_s = min(delay_s, _HISTORY_WAIT_CAP_S)
            log.info(
                "oanda.history.retry",
                extra={"fields": {"instrument": instrument, "delay_s": round(delay_s, 3)}},
            )
            await self._sleep_s(delay_s)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _candles_once(self, instrument: str, from_ms: int, to_ms: int) -> bytes:
        url = f"{self._config.rest_url.rstrip('/')}/v3/instruments/{instrument}/candles"
        params = {
            "granularity": "M1",
            "price": self._config.price,
            "from": format_time(from_ms),
            "to": format_time(to_ms),
        }
        what = f"candles request for {instrument}"
        try:
            response = await self._client().get(
                url, params=params, headers=self._headers(), timeout=_REST_TIMEOUT
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise translate_httpx_error(exc, what, "rest_url") from exc
        if response.status_code != 200:
            raise self._status_error(response, response.content, what, fatal_4xx=False)
        return response.content

    # -- helpers ------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=_REST_TIMEOUT)
        return self._http

    def _headers(self) -> dict[str, str]:
        # the one place the token is revealed: straight into the request's header
        return {
            "Authorization": "Bearer " + self._token.reveal(),
            "Accept-Datetime-Format": "RFC3339",
        }

    def _status_error(
        self, response: httpx.Response, body: bytes, what: str, *, fatal_4xx: bool
    ) -> FxConnectorError:
        message = error_message(body).replace(self._token.reveal(), "********")
        wait_s = retry_after_s(response.headers.get("Retry-After"), self._clock.now_ms())
        return answer_error(
            response.status_code,
            message,
            what=what,
            account_id=self._account,
            wait_s=wait_s,
            fatal_4xx=fatal_4xx,
        )

    def _bad_data(self, message: str) -> None:
        self.parse_errors += 1
        self._samples.append(message)
        level = logging.WARNING if self.parse_errors <= _LOUD_PARSE_ERRORS else logging.DEBUG
        log.log(
            level,
            "oanda.bad_data",
            extra={"fields": {"error": message, "parse_errors": self.parse_errors}},
        )

    def _now_s(self) -> float:
        return self._clock.now_ms() / 1000

    async def _sleep_s(self, delay_s: float) -> None:
        """Sleep on the clock; returns early once the broker is closing."""
        if self._closing.is_set():
            return
        deadline_ms = self._clock.now_ms() + math.ceil(delay_s * 1000)
        sleeper = asyncio.ensure_future(self._clock.sleep_until(deadline_ms))
        closer = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait((sleeper, closer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, closer):
                task.cancel()
            await asyncio.gather(sleeper, closer, return_exceptions=True)


def translate_httpx_error(
    exc: httpx.HTTPError | httpx.InvalidURL, what: str, url_setting: str
) -> FxConnectorError:
    """Our error for an httpx error: a bad URL is the config's, everything else is transient."""
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return ConfigError(
            f"OANDA {what}: unusable URL ({exc}): fix {url_setting} under [broker.oanda]"
        )
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status in (401, 403):
            return ConfigError(f"OANDA rejected the token ({status}): {TOKEN_SETTING}")
        return BrokerDisconnected(f"OANDA {what} failed ({status})")
    if isinstance(exc, httpx.TimeoutException):
        return BrokerDisconnected(f"OANDA {what} timed out ({type(exc).__name__})")
    return BrokerDisconnected(f"OANDA {what} failed ({type(exc).__name__}: {exc})")
