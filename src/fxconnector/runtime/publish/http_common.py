"""What the HTTP API and the push stream share: their dependencies, the error shape, parameters.

Rules:
- Every error a client gets is `{"error": {"code": ..., "message": ...}}` with a stable code:
  `unknown_parameter`/`repeated_parameter`/`invalid_range`/`bad_request` (400), `not_found`/
  `unknown_symbol`/`unknown_timeframe` (404), `method_not_allowed` (405), `missing_parameter`/
  `invalid_parameter` (422), `host_not_allowed` (400), `origin_not_allowed` (403),
  `bad_surface` (502, a malformed value in Redis), `unavailable` (503, Redis), `internal`
  (500, a bug of ours).
- Query parameters are parsed by hand, strictly: an unknown or repeated name is an error, numbers
  are plain non-negative decimal integers, and a message quotes at most 60 characters of input.
- Nothing here does I/O; the dependencies are handed in by the composition root.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fxconnector.core.buckets import HasDayGrid
from fxconnector.core.errors import ContractViolation
from fxconnector.core.model.bar import SYMBOL_PATTERN, OhlcvEvent
from fxconnector.core.time_geom import RANGE_END_MS, Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish.event_check import Rejects
from fxconnector.runtime.publish.host_guard import HostPolicy
from fxconnector.runtime.publish.served_symbols import ServedSymbols
from fxconnector.runtime.publish.surface_reader import SurfaceReader, normalize_stream_id

JSON: Final = "application/json"
_DECIMAL = re.compile(r"^[0-9]{1,16}$")
_SYMBOL = re.compile(SYMBOL_PATTERN)
_BOOLEANS: Final = {"true": True, "1": True, "false": False, "0": False}


@dataclass(frozen=True, slots=True)
class PushSettings:
    """Tuning of the push loops (SSE and WebSocket)."""

    heartbeat_s: float = 15.0  # an SSE comment when nothing was sent for this long
    block_ms: int = 1000  # longest blocking XREAD: bounds how late a disconnect is noticed
    batch: int = 500  # entries per XREAD
    backoff_initial_s: float = 0.2  # Redis trouble: first wait, doubled per failure...
    backoff_max_s: float = 5.0  # ...up to this cap (with jitter)
    window: int = 10_000  # newest entries kept in memory for clients resuming from a cursor
    client_queue: int = 5_000  # entries queued per client before it is cut off as too slow
    poll_ms: int = 100  # cluster layout: pause between non-blocking reads while idle
    catch_up_reads: int = 4  # concurrent Redis reads of clients catching up from a cursor


class PushStreams:
    """The open push streams (SSE and WebSocket) and the switch that ends them all at shutdown.

    `close()` makes every open stream end at once and every new one end as it starts (SSE: the
    response ends; WebSocket: a close frame 1001, going away); `wait_ended()` returns once none
    is open. Used from the one event loop of the server.
    """

    def __init__(self) -> None:
        self._closing = asyncio.Event()
        self._ended = asyncio.Event()
        self._ended.set()
        self.open = 0

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def close(self) -> None:
        self._closing.set()

    async def wait_closing(self) -> None:
        await self._closing.wait()

    async def wait_ended(self) -> None:
        await self._ended.wait()

    @contextlib.contextmanager
    def opened(self) -> Iterator[None]:
        """Count one stream as open while the block runs."""
        self.open += 1
        self._ended.clear()
        try:
            yield
        finally:
            self.open -= 1
            if not self.open:
                self._ended.set()


@dataclass(frozen=True, slots=True)
class ApiDeps:
    """Everything the read-only API needs, handed in by the composition root.

    `status()` is this process's `status_v2` summary, `status_symbol(symbol)` the detail of
    one of its symbols.
    `history(symbol, tf, from_ms, to_ms, limit)` gives final bars with
    `from_ms <= open_ms < to_ms` (None: unbounded) from the SSOT, ascending by open_ms: the first
    `limit` from `from_ms` when it is given, else the newest `limit` before `to_ms`. On a
    tail-window miss with a short snapshot it is called as
    `(symbol, tf, None, first_snapshot_open_ms, missing)`: serve that from the tail cache when
    it can, not by scanning the store.
    `history` is awaited: what it cannot answer from memory it reads off the event loop (a
    worker thread), at most `limit` bars. `preview`, `status` and `ready` are called on the
    event loop: they must be quick (in-memory), like the in-process status builder.
    """

    reader: SurfaceReader
    symbols: tuple[str, ...]
    timeframes: tuple[Timeframe, ...]
    history: Callable[[str, Timeframe, int | None, int | None, int], Awaitable[list[OhlcvEvent]]]
    preview: Callable[[str, Timeframe], OhlcvEvent | None]
    status: Callable[[], bytes]
    #: One served symbol's `status_symbol_v1` JSON (quick, in memory, like `status`).
    status_symbol: Callable[[str], bytes]
    ready: Callable[[], tuple[bool, str]]
    metrics_registry: CollectorRegistry
    ui_dir: Path | None = None
    push: PushSettings = field(default_factory=PushSettings)
    streams: PushStreams = field(default_factory=PushStreams)
    bars_recheck_s: float = 0.1  # how long a cached /api/bars window is served unchecked
    #: The fan-out's own Redis connection (the requests' `reader` when None).
    push_reader: SurfaceReader | None = None
    #: Calendars by symbol, for the bar checks of what is read back from Redis.
    calendars: Mapping[str, HasDayGrid] = field(default_factory=dict)
    #: Invalid values read from Redis (counted, sampled for status errors[]).
    rejects: Rejects = field(default_factory=lambda: Rejects(wall_ms))
    #: Who may call: see `host_guard` (the bind host, loopback names, these extra names).
    guard: HostPolicy = field(default_factory=HostPolicy)
    #: The timeframes the SMC layer publishes (`/api/smc`, push `kinds=smc`); empty: SMC off.
    smc_timeframes: tuple[Timeframe, ...] = ()
    #: The namespace's symbols in a shared namespace (`served_symbols`): served besides
    #: `symbols` (this process's own) from Redis alone. None: `symbols` only.
    served: ServedSymbols | None = None

    def served_symbols(self) -> tuple[str, ...]:
        """Every symbol the API serves (own first, then the namespace's other ones)."""
        return self.symbols if self.served is None else self.served.current()

    def is_own(self, symbol: str) -> bool:
        return self.served is None or self.served.is_own(symbol)

    async def refresh_symbols(self) -> None:
        """Refresh the served set when its period is due (one SMEMBERS at most)."""
        if self.served is not None:
            await self.served.refresh_if_due()


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ApiError(Exception):
    """A client error: answered with its status and the JSON error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(code: str, message: str) -> bytes:
    """The canonical JSON of one error."""
    return encode({"error": {"code": code, "message": message}})


def quote(value: str) -> str:
    """`value` for an error message: repr, cut to 60 characters."""
    return repr(value[:60]) + ("..." if len(value) > 60 else "")


def check_names(params: QueryParams, allowed: Iterable[str]) -> dict[str, str]:
    """The query as a dict; ApiError for an unknown or repeated parameter name."""
    allowed_set = frozenset(allowed)
    out: dict[str, str] = {}
    for name, value in params.multi_items():
        if name not in allowed_set:
            known = ", ".join(sorted(allowed_set)) or "none"
            raise ApiError(
                400, "unknown_parameter", f"unknown query parameter {quote(name)} (known: {known})"
            )
        if name in out:
            raise ApiError(400, "repeated_parameter", f"query parameter {quote(name)} is repeated")
        out[name] = value
    return out


def required_text(query: Mapping[str, str], name: str) -> str:
    value = query.get(name)
    if value is None:
        raise ApiError(422, "missing_parameter", f"query parameter {name!r} is required")
    return value


def integer(
    query: Mapping[str, str], name: str, *, minimum: int, maximum: int, default: int | None
) -> int | None:
    """A decimal integer parameter in `[minimum, maximum]`, or `default` when absent."""
    text = query.get(name)
    if text is None:
        return default
    if not _DECIMAL.match(text):
        raise ApiError(
            422,
            "invalid_parameter",
            f"{name} must be a non-negative decimal integer, got {quote(text)}",
        )
    value = int(text)
    if not minimum <= value <= maximum:
        raise ApiError(
            422, "invalid_parameter", f"{name} must be in [{minimum}, {maximum}], got {value}"
        )
    return value


def epoch_ms(query: Mapping[str, str], name: str) -> int | None:
    """An optional UTC epoch-millisecond parameter."""
    return integer(query, name, minimum=0, maximum=RANGE_END_MS, default=None)


def boolean(query: Mapping[str, str], name: str) -> bool:
    text = query.get(name)
    if text is None:
        return False
    value = _BOOLEANS.get(text.lower())
    if value is None:
        raise ApiError(422, "invalid_parameter", f"{name} must be true or false, got {quote(text)}")
    return value


def accepts_gzip(header: str | None) -> bool:
    """Whether an `Accept-Encoding` value allows gzip (RFC 9110 §12.5.3: `gzip` or `*` with a
    q-value above 0; an explicit `gzip;q=0` refuses it whatever `*` says)."""
    if not header:
        return False
    star = False
    for item in header.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        if name not in ("gzip", "x-gzip", "*"):
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        if name == "*":
            star = quality > 0
        else:
            return quality > 0
    return star


def symbol(text: str, symbols: Iterable[str]) -> str:
    if text not in symbols:
        raise ApiError(404, "unknown_symbol", f"unknown symbol {quote(text)}")
    return text


def status_symbol(text: str, deps: ApiDeps) -> str:
    """`/api/status?symbol=`: a served symbol (404 when unknown, 400 when not a symbol at all)."""
    if not _SYMBOL.match(text):
        raise ApiError(
            400, "bad_request", f"symbol must match {_SYMBOL.pattern}, got {quote(text)}"
        )
    return symbol(text, deps.served_symbols())


def timeframe(text: str, timeframes: Iterable[Timeframe]) -> Timeframe:
    for tf in timeframes:
        if tf.value == text:
            return tf
    known = " ".join(tf.value for tf in timeframes)
    raise ApiError(404, "unknown_timeframe", f"unknown timeframe {quote(text)} (served: {known})")


def comma_list(query: Mapping[str, str], name: str) -> list[str] | None:
    """A comma-separated list parameter (None when absent; empty items are an error)."""
    text = query.get(name)
    if text is None:
        return None
    items = text.split(",")
    if any(not item for item in items):
        raise ApiError(422, "invalid_parameter", f"{name} has an empty item: {quote(text)}")
    return items


def stream_id(text: str, name: str) -> str:
    """A stream id parameter in canonical `<ms>-<seq>` form."""
    try:
        return normalize_stream_id(text)
    except ContractViolation:
        raise ApiError(
            422, "invalid_parameter", f"{name} must be a stream id <ms>-<seq>, got {quote(text)}"
        ) from None


def get_route(path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> Route:
    """A plain Starlette route answering GET only (no FastAPI dependency machinery: it costs
    more per request than the whole cached `/api/bars` answer)."""
    route = Route(path, endpoint, methods=["GET"])
    route.methods = {"GET"}  # Starlette adds HEAD to every GET route; this API answers GET only
    return route
