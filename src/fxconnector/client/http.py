"""Client of the read-only HTTP API: bootstrap from `/api/bars`, follow `/api/stream` (SSE).

Rules:
- Public wire only (docs/api.md): `GET /api/bars` and `GET /api/stream`; it imports nothing of
  the server. Events are decoded into the contract's model (`OhlcvEvent`), so a malformed one
  fails loudly (ContractViolation) instead of entering the book.
- One client follows one symbol (any of its timeframes) over one SSE connection, so its cursor
  is one stream id in either Redis layout. For several symbols, run several clients.
- `bootstrap` loads each timeframe's finals (`limit` newest) and current preview into the
  BarBook (`client/merge.py`, the policy the chart runs too) and sets the cursor to the oldest
  of the series' cursors: nothing is missed, and what is read twice is ignored by the merge.
- `changes()` follows the stream after the cursor, resuming with `Last-Event-ID` (the id of
  the last event applied), and yields every change that altered the book, in stream order.
  A dropped or refused connection (the server restarting, 503) is retried with capped
  exponential backoff with jitter (`backoff.Backoff`). Every reconnect (after a failure, a
  body the server ended, or a `cursor_expired` notice) bootstraps again first, because the
  server may have come back with an empty Redis whose stream ids mean something else: the
  window's bars are applied on top of the book, so finals made while away come out as
  changes and redelivered ones are ignored by the merge. `unavailable` (Redis trouble on
  the server) is waited out on the open stream. A `cursor_expired` that follows a bootstrap
  before any event arrived (the stream lost our place again at once: a retention shorter than
  a round trip, or a server handing out stale cursors) waits first, with the same capped
  exponential backoff with jitter, so a client never reloads `/api/bars` in a tight loop; the
  wait is counted (`stats.resync_waits`) and said in words in `stats.last_error`. The first
  event read resets it. A 4xx answer
  (unknown symbol, bad timeframe) is the caller's to fix: ConfigError, never retried.
- Finals missing from a re-bootstrap's window (an outage longer than `limit` bars) are not
  fetched: `limit` bounds what a restart can fill in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx
import msgspec

from fxconnector.client.backoff import Backoff
from fxconnector.client.frames import BarWindow
from fxconnector.client.merge import BarBook, Change
from fxconnector.core.errors import ConfigError, ContractViolation, SurfaceUnavailable
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import Timeframe, parse_timeframe
from fxconnector.core.utils.json_codec import decode

log = logging.getLogger("fxconnector.client.http")

DEFAULT_LIMIT: Final = 1000
DEFAULT_TIMEOUT_S: Final = 10.0


class _BarsBody(msgspec.Struct, frozen=True):
    """The `/api/bars` envelope."""

    symbol: str
    tf: str
    bars: list[OhlcvEvent]
    preview: OhlcvEvent | None
    cursor: str | None


def _timeframe(tf: str | Timeframe) -> Timeframe:
    try:
        return tf if isinstance(tf, Timeframe) else parse_timeframe(tf)
    except ContractViolation as exc:
        raise ConfigError(str(exc)) from None


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        detail = f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        detail = response.text[:200]
    message = f"{response.request.method} {response.request.url.path}: {response.status_code} "
    if response.status_code >= 500:
        raise SurfaceUnavailable(message + detail)
    raise ConfigError(message + detail)


def _bars_params(
    symbol: str, tf: Timeframe, limit: int, from_ms: int | None, to_ms: int | None
) -> dict[str, str]:
    params = {"symbol": symbol, "tf": tf.value, "limit": str(limit), "include_preview": "true"}
    if from_ms is not None:
        params["from_ms"] = str(from_ms)
    if to_ms is not None:
        params["to_ms"] = str(to_ms)
    return params


def _window(response: httpx.Response, symbol: str, tf: Timeframe) -> BarWindow:
    _raise_for_status(response)
    try:
        body = decode(response.content, _BarsBody)
    except msgspec.MsgspecError as exc:
        raise ContractViolation(
            f"/api/bars answered a body that is not a bar window: {exc}"
        ) from None
    bars = (*body.bars, body.preview) if body.preview is not None else tuple(body.bars)
    return BarWindow(symbol, tf, tuple(bars), body.cursor)


def fetch_bars(
    base_url: str,
    symbol: str,
    tf: str | Timeframe = "1m",
    *,
    limit: int = DEFAULT_LIMIT,
    from_ms: int | None = None,
    to_ms: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> BarWindow:
    """One `/api/bars` window (finals and the current preview), synchronously.

    Raises ConfigError for a request the server refuses (4xx) and SurfaceUnavailable when the
    server cannot be reached or answers 5xx.
    """
    timeframe = _timeframe(tf)
    try:
        with httpx.Client(base_url=base_url, timeout=timeout_s) as http:
            response = http.get(
                "/api/bars", params=_bars_params(symbol, timeframe, limit, from_ms, to_ms)
            )
    except httpx.TransportError as exc:
        raise SurfaceUnavailable(f"{base_url}: {exc!r}") from exc
    return _window(response, symbol, timeframe)


@dataclass(frozen=True, slots=True)
class _Sse:
    """One server-sent event."""

    event: str
    data: str
    id: str | None


async def _sse_events(lines: AsyncIterator[str]) -> AsyncGenerator[_Sse, None]:
    """Events of an SSE body (comments and `retry:` skipped; see the HTML SSE parsing rules)."""
    event, event_id = "message", None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield _Sse(event, "\n".join(data), event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            event_id = value


@dataclass(slots=True)
class HttpClientStats:
    """Counters of one client."""

    events_read: int = 0
    applied: int = 0
    ignored: int = 0
    bootstraps: int = 0
    reconnects: int = 0
    server_errors: int = 0
    resync_waits: int = 0
    last_error: str = ""


class _Resync(Exception):
    """The stream told us to bootstrap again (internal control flow)."""


class HttpClient:
    """Follows one symbol's bars over HTTP into a BarBook (rules in the module docstring).

    Use it as an async context manager; `bootstrap()` once, then `async for change in
    client.changes()`; `window(tf)` is the series as a BarWindow at any time.
    """

    def __init__(
        self,
        base_url: str,
        symbol: str,
        tfs: Sequence[str | Timeframe] = ("1m",),
        *,
        limit: int = DEFAULT_LIMIT,
        book: BarBook | None = None,
        backoff: Backoff | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`sleep` waits out backoff delays (tests inject one that records them)."""
        if not tfs:
            raise ConfigError("follow at least one timeframe")
        self.symbol = symbol
        self.tfs = tuple(dict.fromkeys(_timeframe(tf) for tf in tfs))
        self.limit = limit
        self.book = book if book is not None else BarBook()
        self.stats = HttpClientStats()
        self._backoff = backoff if backoff is not None else Backoff()
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter only
        self._sleep = sleep
        self._read_since_bootstrap = 0
        self._resyncs_in_a_row = 0
        # Reads of the stream wait for pings (sent every few seconds), not for the timeout.
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(timeout_s, read=max(timeout_s, 30.0))
        )
        self.cursor: str | None = None
        #: The streams `changes()` handed out and not yet finished: closed by `aclose()`.
        self._streams: weakref.WeakSet[AsyncGenerator[Change, None]] = weakref.WeakSet()
        self._cursors: dict[Timeframe, str | None] = {}

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every stream still open (a loop over `changes()` that was left with `break`),
        then the connections."""
        for stream in list(self._streams):
            await stream.aclose()
        await self._http.aclose()

    def window(self, tf: str | Timeframe = "1m") -> BarWindow:
        """The series held now (finals and the preview), with the cursor followed."""
        timeframe = _timeframe(tf)
        return BarWindow(
            self.symbol, timeframe, tuple(self.book.bars(self.symbol, timeframe)), self.cursor
        )

    async def bootstrap(self) -> list[Change]:
        """Load every timeframe's window; returns the changes when the book already held bars.

        The first load of a series replaces it (`BarBook.load_snapshot`); later loads (after a
        reconnect) apply the window's bars on top, so what changed comes out as changes.
        """
        changes: list[Change] = []
        windows: list[BarWindow] = []
        for tf in self.tfs:
            try:
                response = await self._http.get(
                    "/api/bars", params=_bars_params(self.symbol, tf, self.limit, None, None)
                )
            except httpx.TransportError as exc:
                raise SurfaceUnavailable(f"/api/bars: {exc!r}") from exc
            windows.append(_window(response, self.symbol, tf))
        for window in windows:
            if window.cursor is None:
                raise SurfaceUnavailable(
                    f"/api/bars of {self.symbol} {window.tf.value} has no stream cursor yet"
                )
            if window.tf not in self._cursors:
                self.book.load_snapshot(self.symbol, window.tf, window.finals)
                previews = [bar for bar in window.bars if not bar.complete]
                changes.extend(c for c in map(self.book.apply, previews) if c.changed)
            else:
                changes.extend(c for c in map(self.book.apply, window.bars) if c.changed)
            self._cursors[window.tf] = window.cursor
        # Stream ids compare as (ms, seq); the oldest cursor misses nothing of any series.
        self.cursor = min((c for c in self._cursors.values() if c is not None), key=_id_order)
        self.stats.bootstraps += 1
        self._read_since_bootstrap = 0
        return changes

    def changes(self) -> AsyncIterator[Change]:
        """Every change to the book from the stream, for ever (see the module docstring).

        Raises ConfigError on a refused request, SurfaceUnavailable after
        `backoff.max_failures` failed attempts in a row. Leaving the loop early is fine: the
        stream is closed when the client is (`async with HttpClient(...)`).
        """
        stream = self._changes()
        self._streams.add(stream)
        return stream

    async def _changes(self) -> AsyncGenerator[Change, None]:
        if self.cursor is None:
            for change in await self._retrying_bootstrap():
                yield change
        failures = 0
        while True:
            try:
                async with contextlib.aclosing(self._follow()) as follow:
                    async for change in follow:
                        failures = 0
                        yield change
                # The body ended: the server is shutting down, or cut us off as too slow.
            except _Resync:
                await self._wait_if_resync_repeats()
            except (httpx.TransportError, SurfaceUnavailable) as exc:
                failures += 1
                self.stats.last_error = repr(exc)
                if (
                    self._backoff.max_failures is not None
                    and failures >= self._backoff.max_failures
                ):
                    raise SurfaceUnavailable(f"/api/stream: {failures} failures: {exc!r}") from exc
                delay_s = self._backoff.delay_s(failures, self._rng)
                log.warning(
                    "client.http_stream_failed",
                    extra={
                        "fields": {"failures": failures, "retry_in_s": delay_s, "error": repr(exc)}
                    },
                )
                await self._sleep(delay_s)
            self.stats.reconnects += 1
            # The server may be a new one (an empty Redis, other stream ids): load again.
            for change in await self._retrying_bootstrap():
                yield change

    async def _retrying_bootstrap(self) -> list[Change]:
        failures = 0
        while True:
            try:
                return await self.bootstrap()
            except SurfaceUnavailable as exc:
                failures += 1
                self.stats.last_error = str(exc)
                if (
                    self._backoff.max_failures is not None
                    and failures >= self._backoff.max_failures
                ):
                    raise
                await self._sleep(self._backoff.delay_s(failures, self._rng))

    async def _wait_if_resync_repeats(self) -> None:
        """Back off when the stream lost our place before any event followed a bootstrap."""
        if self._read_since_bootstrap > 0:
            self._resyncs_in_a_row = 0
            return
        self._resyncs_in_a_row += 1
        delay_s = self._backoff.delay_s(self._resyncs_in_a_row, self._rng)
        self.stats.resync_waits += 1
        self.stats.last_error = (
            f"the stream lost our place again right after a reload "
            f"({self._resyncs_in_a_row} in a row); reloading in {delay_s:.1f} s"
        )
        log.warning(
            "client.http_resync_repeated",
            extra={"fields": {"in_a_row": self._resyncs_in_a_row, "retry_in_s": delay_s}},
        )
        await self._sleep(delay_s)

    async def _follow(self) -> AsyncGenerator[Change, None]:
        params = {"symbols": self.symbol, "tfs": ",".join(tf.value for tf in self.tfs)}
        headers = {"Last-Event-ID": self.cursor} if self.cursor is not None else {}
        async with self._http.stream("GET", "/api/stream", params=params, headers=headers) as sse:
            if sse.status_code >= 400:
                await sse.aread()
                _raise_for_status(sse)
            async with contextlib.aclosing(_sse_events(sse.aiter_lines())) as messages:
                async for message in messages:
                    if message.event == "error":
                        self._server_error(message.data)
                        continue
                    if message.event != "bar":
                        continue
                    try:
                        event = decode(message.data, OhlcvEvent)
                    except msgspec.MsgspecError as exc:
                        raise ContractViolation(
                            f"/api/stream sent a bar that is not one: {exc}"
                        ) from None
                    self.stats.events_read += 1
                    self._read_since_bootstrap += 1
                    self._resyncs_in_a_row = 0
                    change = self.book.apply(event)
                    if message.id is not None:
                        self.cursor = message.id
                    if change.changed:
                        self.stats.applied += 1
                        yield change
                    else:
                        self.stats.ignored += 1

    def _server_error(self, data: str) -> None:
        self.stats.server_errors += 1
        try:
            error: Any = msgspec.json.decode(data)["error"]
            code = str(error["code"])
        except (msgspec.MsgspecError, KeyError, TypeError):
            code = "unknown"
        self.stats.last_error = data[:300]
        log.warning("client.http_stream_error", extra={"fields": {"error": data[:300]}})
        if code == "cursor_expired":
            raise _Resync(code)


def _id_order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    if not (ms.isdigit() and seq.isdigit()):
        raise ContractViolation(f"/api/bars gave a cursor that is not a stream id: {stream_id!r}")
    return int(ms), int(seq)
