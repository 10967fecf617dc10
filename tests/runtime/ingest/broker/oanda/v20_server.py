"""A local OANDA v20 server for tests: Starlette under uvicorn on a free loopback port.

It speaks the v20 wire format for the two endpoints the adapter uses and is scripted from the
test's thread:
- `GET /v3/accounts/{account}/pricing/stream?instruments=A_B,...`: a chunked response of JSON
  lines. `send(...)` writes lines to the newest stream, `end_stream()` ends it cleanly,
  `abort_stream()` breaks it mid-body; with `heartbeat_s` set it sends HEARTBEATs on its own;
  otherwise it stays silent.
- `GET /v3/instruments/{instrument}/candles`: M1 candles from `set_candles(...)`, with OANDA's
  rules: `from`/`to` (RFC3339 or UNIX) select `from <= time < to`; more than 5000 candles
  (`count`, or a range of more than 5000 minutes) or a `to` in the future is a 400 with an
  `errorMessage`, like OANDA.
- A wrong `Authorization: Bearer` is a 401; `fail_next(...)` scripts any status (429 with a
  Retry-After, 503, ...) for the next requests of a kind.
Every request is recorded (`requests`), with its arrival time.

It is independent of the adapter's code (its own time parsing), so it checks the adapter rather
than echoing it.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import math
import queue
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Kind = Literal["stream", "candles", "other"]
OHLC = tuple[str, str, str, str]

MINUTE_MS = 60_000
MAX_CANDLES = 5000
_POLL_S = 0.005


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request the server received."""

    kind: Kind
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    at_s: float  # `V20Server.now_s()` at arrival


@dataclass(frozen=True, slots=True)
class ServerCandle:
    """One M1 candle the server can answer with."""

    open_ms: int
    volume: int
    complete: bool
    bid: OHLC
    ask: OHLC
    mid: OHLC


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    retry_after: str | None
    message: str


@dataclass(slots=True)
class _Stream:
    """One open pricing stream: what the test scripted for it."""

    actions: queue.Queue[tuple[str, str]] = field(default_factory=queue.Queue)


def rfc3339(ts_ms: int) -> str:
    """OANDA's time format: RFC3339 UTC with nanoseconds."""
    moment = dt.datetime.fromtimestamp(ts_ms // 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}000000Z"


def _parse_time_ms(text: str) -> int:
    if "T" in text:
        return int(dt.datetime.fromisoformat(text).timestamp() * 1000)
    return int(float(text) * 1000)


class V20Server:
    """A scripted OANDA v20 REST + stream server in a background thread."""

    def __init__(self, *, token: str, account_id: str) -> None:
        self.token = token
        self.account_id = account_id
        self.requests: list[Recorded] = []
        #: What stamps a request's arrival (`Recorded.at_s`): give it the client's clock to
        #: measure gaps on that clock, not in wall-clock time.
        self.now_s: Callable[[], float] = time.monotonic
        #: Seconds between automatic HEARTBEATs on every stream; None: none.
        self.heartbeat_s: float | None = None
        #: How long each candles answer takes (to see requests overlap, or not).
        self.candles_delay_s = 0.0
        self.max_candles_in_flight = 0
        self._candles_in_flight = 0
        self._candles: dict[str, list[ServerCandle]] = {}
        self._failures: dict[Kind, collections.deque[_Failure]] = collections.defaultdict(
            collections.deque
        )
        self._streams: list[_Stream] = []
        self._pending: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._port = 0

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> V20Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])), name="v20-server"
        )
        self._thread.start()
        deadline = time.monotonic() + 5.0
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                sock.close()
                raise RuntimeError("the v20 test server did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():
                raise RuntimeError("the v20 test server did not stop")

    def reset(self) -> None:
        """Forget every script, candle, stream and recorded request (one server, many tests)."""
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self._candles.clear()
            self._streams.clear()
            self._pending.clear()
            self.heartbeat_s = None
            self.candles_delay_s = 0.0
            self.max_candles_in_flight = 0
            self.now_s = time.monotonic

    # -- scripting (from the test) ------------------------------------------------------------

    def set_candles(self, instrument: str, candles: Iterable[ServerCandle]) -> None:
        self._candles[instrument] = sorted(candles, key=lambda c: c.open_ms)

    def fail_next(
        self,
        kind: Kind,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        message: str = "Scripted failure",
    ) -> None:
        """Answer the next `times` requests of `kind` with `status` (and a v20 error body)."""
        with self._lock:
            for _ in range(times):
                self._failures[kind].append(_Failure(status, retry_after, message))

    def send(self, *messages: Mapping[str, Any] | str) -> None:
        """Write lines (a dict is JSON-encoded) to the newest stream, or the next one to open."""
        for message in messages:
            text = message if isinstance(message, str) else json.dumps(message)
            self._act(("line", text))

    def end_stream(self) -> None:
        """End the newest stream's response cleanly (the last chunk)."""
        self._act(("end", ""))

    def abort_stream(self) -> None:
        """Break the newest stream mid-body (the client sees an incomplete chunked read)."""
        self._act(("abort", ""))

    def requests_of(self, kind: Kind) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.kind == kind]

    def _act(self, action: tuple[str, str]) -> None:
        with self._lock:
            if self._streams:
                self._streams[-1].actions.put(action)
            else:
                self._pending.append(action)

    # -- the app -------------------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v3/accounts/{account_id}/pricing/stream", self._pricing_stream),
                Route("/v3/instruments/{instrument}/candles", self._instrument_candles),
                Route("/{path:path}", self._not_found),
            ]
        )

    def _record(self, kind: Kind, request: Request) -> Response | None:
        """Record the request; an answer when it is unauthorized or scripted to fail."""
        with self._lock:
            self.requests.append(
                Recorded(
                    kind=kind,
                    method=request.method,
                    path=request.url.path,
                    query=dict(request.query_params),
                    authorization=request.headers.get("authorization"),
                    at_s=self.now_s(),
                )
            )
            failure = self._failures[kind].popleft() if self._failures[kind] else None
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "Insufficient authorization to perform request.")
        if failure is not None:
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else None
            return _error(failure.status, failure.message, headers)
        return None

    async def _not_found(self, request: Request) -> Response:
        answer = self._record("other", request)
        return answer or _error(404, f"The path {request.url.path} does not exist")

    async def _pricing_stream(self, request: Request) -> Response:
        answer = self._record("stream", request)
        if answer is not None:
            return answer
        if request.path_params["account_id"] != self.account_id:
            return _error(400, "Invalid value specified for 'accountID'")
        instruments = request.query_params.get("instruments", "")
        if not instruments or any(len(i) != 7 or i[3] != "_" for i in instruments.split(",")):
            return _error(400, "Invalid value specified for 'instruments'")
        stream = _Stream()
        with self._lock:
            for action in self._pending:
                stream.actions.put(action)
            self._pending.clear()
            self._streams.append(stream)
        return StreamingResponse(self._stream_body(stream), media_type="application/octet-stream")

    async def _stream_body(self, stream: _Stream) -> AsyncIterator[bytes]:
        last_heartbeat = time.monotonic()
        while not self._stopping:
            try:
                kind, text = stream.actions.get_nowait()
            except queue.Empty:
                if self.heartbeat_s is not None and (
                    time.monotonic() - last_heartbeat >= self.heartbeat_s
                ):
                    last_heartbeat = time.monotonic()
                    now_ms = int(time.time() * 1000)
                    yield (
                        json.dumps({"type": "HEARTBEAT", "time": rfc3339(now_ms)}) + "\n"
                    ).encode()
                await asyncio.sleep(_POLL_S)
                continue
            if kind == "end":
                return
            if kind == "abort":
                raise ConnectionAbortedError("scripted: the stream breaks mid-body")
            yield (text + "\n").encode()

    async def _instrument_candles(self, request: Request) -> Response:
        answer = self._record("candles", request)
        if answer is not None:
            return answer
        instrument = request.path_params["instrument"]
        if instrument not in self._candles:
            return _error(400, "Invalid value specified for 'instrument'")
        query = request.query_params
        if query.get("granularity", "S5") != "M1":
            return _error(400, "Invalid value specified for 'granularity'")  # the fake has M1 only
        price = query.get("price", "M")
        if not price or any(p not in "BAM" for p in price):
            return _error(400, "Invalid value specified for 'price'")
        try:
            from_ms = _parse_time_ms(query["from"]) if "from" in query else None
            to_ms = _parse_time_ms(query["to"]) if "to" in query else None
            count = int(query.get("count", "500"))
        except ValueError:
            return _error(400, "Invalid value specified for 'from', 'to' or 'count'")
        if from_ms is not None and to_ms is not None:
            if "count" in query:
                return _error(400, "'count' cannot be specified when 'to' and 'from' are given")
            if to_ms <= from_ms:
                return _error(400, "Invalid value specified for 'to'. Time is before 'from'")
            count = math.ceil((to_ms - from_ms) / MINUTE_MS)
        if count > MAX_CANDLES:
            return _error(400, "Maximum value for 'count' exceeded")
        if to_ms is not None and to_ms > time.time() * 1000:
            return _error(400, "Invalid value specified for 'to'. Time is in the future")
        candles = self._candles[instrument]
        if from_ms is not None:
            chosen = [c for c in candles if c.open_ms >= from_ms]
            chosen = (
                [c for c in chosen if c.open_ms < to_ms] if to_ms is not None else chosen[:count]
            )
        elif to_ms is not None:
            chosen = [c for c in candles if c.open_ms < to_ms][-count:]
        else:
            chosen = candles[-count:]
        self._candles_in_flight += 1
        self.max_candles_in_flight = max(self.max_candles_in_flight, self._candles_in_flight)
        try:
            if self.candles_delay_s:
                await asyncio.sleep(self.candles_delay_s)
        finally:
            self._candles_in_flight -= 1
        return JSONResponse(
            {
                "instrument": instrument,
                "granularity": "M1",
                "candles": [_candle_json(c, price) for c in chosen],
            }
        )


def _candle_json(candle: ServerCandle, price: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "complete": candle.complete,
        "volume": candle.volume,
        "time": rfc3339(candle.open_ms),
    }
    for letter, name, ohlc in (
        ("B", "bid", candle.bid),
        ("A", "ask", candle.ask),
        ("M", "mid", candle.mid),
    ):
        if letter in price:
            out[name] = dict(zip("ohlc", ohlc, strict=True))
    return out


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"errorMessage": message}, status_code=status, headers=headers)
