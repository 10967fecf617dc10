"""The read-only HTTP API (DESIGN §8): bars, status, health, symbols, metrics, OpenAPI, the UI.

Rules:
- Read-only: every route answers GET only; any other method is a 405 with the JSON error shape.
  Nothing here writes to Redis, the SSOT or the connector.
- No global app: `create_app(deps)` builds one from the dependencies the composition root hands
  in (`ApiDeps`); the push stream (SSE, WebSocket) is mounted from `ws_sse`.
- Every request passes `host_guard` first (Host check against DNS rebinding; WebSocket Origin).
- Every error is `{"error": {"code", "message"}}` (codes in `http_common`): client mistakes are
  4xx, Redis trouble (SurfaceUnavailable, any TransientIOError) is 503 `unavailable`, and a 500
  `internal` means a bug of ours.
- The hot path is lean: plain Starlette routes (no FastAPI dependency solving), FastAPI's
  OpenTelemetry hooks off, bodies pre-encoded by the canonical codec (FastAPI's JSON encoder is
  never used), `/api/bars` windows cached per cursor (see `bars_window`), parsed `/api/bars`
  queries cached by their raw query string, the fixed bodies encoded once at start.
- `/api/bars` is gzipped when the request's Accept-Encoding allows it (`Content-Encoding: gzip`)
  and never otherwise; every `/api/bars` answer says `Vary: Accept-Encoding`. The other JSON
  answers that can be large (status, the ticks) are gzipped the same way above `_GZIP_MIN`
  bytes; the UI's static files by `static_ui`.
- `/api/ticks` serves the last tick of each symbol from the surface's tick cache, each checked
  against `tick_v1` first (an invalid one is left out and counted, like any value from Redis).
- Parameters are parsed by hand (strict, see `http_common`) and documented by hand
  (`openapi_doc`), with the public contracts' JSON Schemas as components.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Any, Final

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from fxconnector.core.errors import TransientIOError
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish import exec_routes
from fxconnector.runtime.publish import http_common as params
from fxconnector.runtime.publish import openapi_doc as doc
from fxconnector.runtime.publish.bars_window import BarsService
from fxconnector.runtime.publish.event_check import EventCheck
from fxconnector.runtime.publish.host_guard import HostGuard
from fxconnector.runtime.publish.http_common import JSON, ApiDeps, ApiError, error_body, get_route
from fxconnector.runtime.publish.openapi_doc import DEFAULT_LIMIT, MAX_LIMIT
from fxconnector.runtime.publish.static_ui import StaticUi
from fxconnector.runtime.publish.ws_sse import install_push
from fxconnector.runtime.smc.api import smc_doc, smc_endpoint
from fxconnector.runtime.smc.check import HintCheck

__all__ = ["ApiDeps", "create_app"]

TITLE: Final = "fxconnector"
DESCRIPTION: Final = (
    "Read-only market data: final OHLCV bars, live previews, status, SMC hints; and the "
    "execution process's orders, positions and trading states (intents go to its control socket)."
)
_BARS_PARAMS: Final = ("symbol", "tf", "limit", "from_ms", "to_ms", "include_preview")
_GZIP_MIN: Final = 1024  # smaller bodies fit one packet: compressing them gains nothing
_CODES: Final = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
_PARSED_QUERIES_MAX: Final = 1024
_PLAIN: Final = {"vary": "Accept-Encoding"}
_GZIP: Final = {"vary": "Accept-Encoding", "content-encoding": "gzip"}
# FastAPI's native OpenTelemetry hooks cost more per request than a cached answer; metrics are
# our own Prometheus registry.
_NO_TELEMETRY: Final[Any] = {"tracing": False, "metrics": False, "logs": False}


@dataclass(frozen=True, slots=True)
class BarsQuery:
    """A valid `/api/bars` query."""

    symbol: str
    tf: Timeframe
    limit: int
    from_ms: int | None
    to_ms: int | None
    with_preview: bool


def parse_bars_query(query: QueryParams, deps: ApiDeps) -> BarsQuery:
    """Validate `/api/bars` parameters (ApiError with the right status and code)."""
    values = params.check_names(query, _BARS_PARAMS)
    symbol = params.symbol(params.required_text(values, "symbol"), deps.served_symbols())
    tf = params.timeframe(params.required_text(values, "tf"), deps.timeframes)
    limit = params.integer(values, "limit", minimum=1, maximum=MAX_LIMIT, default=DEFAULT_LIMIT)
    assert limit is not None  # a default is given
    from_ms = params.epoch_ms(values, "from_ms")
    to_ms = params.epoch_ms(values, "to_ms")
    with_preview = params.boolean(values, "include_preview")
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise ApiError(400, "invalid_range", f"from_ms {from_ms} is after to_ms {to_ms}")
    if (from_ms is not None or to_ms is not None) and not deps.is_own(symbol):
        raise ApiError(
            409,
            "foreign_symbol_range",
            f"{symbol} is published by another process of the namespace: this process serves "
            "it from its Redis snapshot only (the newest finals, without from_ms/to_ms); ask "
            "the owning process for a range",
        )
    return BarsQuery(symbol, tf, limit, from_ms, to_ms, with_preview)


def create_app(deps: ApiDeps) -> FastAPI:
    """A new app serving `deps` (call once per server)."""
    app = FastAPI(
        title=TITLE,
        version="1",
        description=DESCRIPTION,
        docs_url=None,  # served below from the package's vendored assets, not a CDN
        redoc_url=None,
        telemetry=_NO_TELEMETRY,
    )
    _install_error_handlers(app)
    app.add_middleware(HostGuard, policy=deps.guard)
    check = EventCheck(deps.rejects, deps.calendars)
    bars = BarsService(
        deps.reader,
        deps.history,
        deps.preview,
        recheck_s=deps.bars_recheck_s,
        check=check,
    )
    parsed_queries: dict[bytes, BarsQuery] = {}
    live_body = encode({"status": "live"})
    ready_body = encode({"status": "ready"})
    timeframes = [tf.value for tf in deps.timeframes]
    symbols_bodies: dict[tuple[str, ...], bytes] = {}

    def symbols_body() -> bytes:
        served = deps.served_symbols()
        body = symbols_bodies.get(served)
        if body is None:
            symbols_bodies.clear()
            body = symbols_bodies[served] = encode(
                {"symbols": list(served), "timeframes": timeframes}
            )
        return body

    async def get_bars(request: Request) -> Response:
        gzip = params.accepts_gzip(request.headers.get("accept-encoding"))
        await deps.refresh_symbols()
        raw_query: bytes = request.scope["query_string"]
        query = parsed_queries.get(raw_query)
        if query is None:
            query = parse_bars_query(request.query_params, deps)
            if len(parsed_queries) >= _PARSED_QUERIES_MAX:
                parsed_queries.clear()
            parsed_queries[raw_query] = query
        if query.from_ms is None and query.to_ms is None:
            body = await bars.tail(
                query.symbol, query.tf, query.limit, with_preview=query.with_preview, gzip=gzip
            )
        else:
            body = await bars.range(
                query.symbol,
                query.tf,
                query.from_ms,
                query.to_ms,
                query.limit,
                with_preview=query.with_preview,
                gzip=gzip,
            )
        return Response(body, headers=_GZIP if gzip else _PLAIN, media_type=JSON)

    async def get_status(request: Request) -> Response:
        symbol = params.check_names(request.query_params, ("symbol",)).get("symbol")
        if symbol is None:
            return json_response(request, deps.status())
        await deps.refresh_symbols()
        symbol = params.status_symbol(symbol, deps)
        if deps.is_own(symbol):
            return Response(deps.status_symbol(symbol), media_type=JSON)
        # Another process's symbol: the detail its owner writes to Redis.
        detail = await deps.reader.status_symbol(symbol)
        if detail is None:
            raise ApiError(
                404, "status_not_published", f"no live process publishes the status of {symbol}"
            )
        return Response(detail, media_type=JSON)

    async def get_status_processes(request: Request) -> Response:
        params.check_names(request.query_params, ())
        found = await deps.reader.status_processes()
        body = b'{"processes":[' + b",".join(found.values()) + b"]}"
        return json_response(request, body)

    async def get_ticks(request: Request) -> Response:
        values = params.check_names(request.query_params, ("symbols",))
        await deps.refresh_symbols()
        served = deps.served_symbols()
        wanted = params.comma_list(values, "symbols")
        symbols = list(served) if wanted is None else [params.symbol(s, served) for s in wanted]
        found = await deps.reader.ticks(list(dict.fromkeys(symbols)))
        ticks = [
            found[s] for s in dict.fromkeys(symbols) if s in found and check.tick(found[s], s, s)
        ]
        return json_response(request, b'{"ticks":[' + b",".join(ticks) + b"]}")

    async def get_live(request: Request) -> Response:
        params.check_names(request.query_params, ())
        return Response(live_body, media_type=JSON)

    async def get_ready(request: Request) -> Response:
        params.check_names(request.query_params, ())
        ready, reason = deps.ready()
        if ready:
            return Response(ready_body, media_type=JSON)
        return Response(encode({"reason": reason, "status": "not_ready"}), 503, media_type=JSON)

    async def get_symbols(request: Request) -> Response:
        params.check_names(request.query_params, ())
        await deps.refresh_symbols()
        return Response(symbols_body(), media_type=JSON)

    async def get_docs(request: Request) -> Response:
        params.check_names(request.query_params, ())
        return docs_page

    async def get_metrics(request: Request) -> Response:
        params.check_names(request.query_params, ())
        return Response(generate_latest(deps.metrics_registry), media_type=CONTENT_TYPE_LATEST)

    paths: doc.Paths = {}
    routes: list[BaseRoute] = []
    for path, endpoint, operation_id, summary, path_doc in [
        (
            "/api/bars",
            get_bars,
            "bars",
            "Final bars, the current preview, the stream cursor",
            doc.bars_doc(deps),
        ),
        (
            "/api/status",
            get_status,
            "status",
            "This process's live status (status_v2), or one symbol's (status_symbol_v1)",
            doc.status_doc(deps),
        ),
        (
            "/api/status/processes",
            get_status_processes,
            "status_processes",
            "The live status (status_v2) of every process of the namespace, from Redis",
            doc.json_doc("StatusProcesses", 400, 503),
        ),
        (
            "/api/smc",
            smc_endpoint(deps, HintCheck(deps.rejects)),
            "smc",
            "A series' SMC hints (smc_hint_v1, active and newest) and the SMC stream cursor",
            smc_doc(deps),
        ),
        (
            "/api/ticks",
            get_ticks,
            "ticks",
            "The last tick (bid, ask, broker time) of each served symbol, from the tick cache",
            doc.ticks_doc(deps),
        ),
        ("/api/health/live", get_live, "live", "Liveness", doc.json_doc("Live", 400)),
        ("/api/health/ready", get_ready, "ready", "Readiness", doc.ready_doc()),
        (
            "/api/symbols",
            get_symbols,
            "symbols",
            "Served symbols (this process's, and in a shared namespace every process's) and "
            "timeframes",
            doc.json_doc("Symbols", 400),
        ),
        ("/metrics", get_metrics, "metrics", "Prometheus metrics", doc.metrics_doc()),
        *exec_routes.routes(deps),
    ]:
        routes.append(get_route(path, endpoint))
        paths[path] = doc.operation(operation_id, summary, path_doc)
    # The Swagger UI page; its assets (swagger-ui-dist from npm, pinned in package-lock.json)
    # are served with the chart from the package's `ui/web/vendor`, so it works offline. The
    # URLs are relative to /api/docs: they hold behind a proxy that mounts the API elsewhere.
    docs_page = get_swagger_ui_html(
        openapi_url="../openapi.json",
        title=f"{TITLE} API",
        swagger_js_url="../vendor/swagger-ui-bundle.js",
        swagger_css_url="../vendor/swagger-ui.css",
        swagger_favicon_url="../vendor/favicon-32x32.png",
    )
    routes.append(get_route("/api/docs", get_docs))
    app.router.routes[:0] = routes  # ahead of FastAPI's own (/openapi.json): fewer matches
    paths.update(install_push(app, deps))
    document = doc.document(paths, title=TITLE, version=app.version, description=DESCRIPTION)
    document["components"]["schemas"].update(exec_routes.components())
    app.openapi = lambda: document  # type: ignore[method-assign]
    if deps.ui_dir is not None:
        app.mount("/", StaticUi(directory=deps.ui_dir), name="ui")
    return app


def json_response(request: Request, body: bytes) -> Response:
    """A JSON answer, gzipped when it is large enough and the client accepts gzip."""
    if len(body) < _GZIP_MIN:
        return Response(body, headers=_PLAIN, media_type=JSON)
    if params.accepts_gzip(request.headers.get("accept-encoding")):
        return Response(
            gzip.compress(body, compresslevel=5, mtime=0), headers=_GZIP, media_type=JSON
        )
    return Response(body, headers=_PLAIN, media_type=JSON)


def _error_response(status: int, code: str, message: str, headers: Any = None) -> Response:
    return Response(error_body(code, message), status, headers=headers, media_type=JSON)


def _install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error_response(exc.status, exc.code, exc.message)

    async def on_validation(_: Request, exc: Exception) -> Response:
        return _error_response(422, "invalid_parameter", str(exc)[:500])

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = _CODES.get(exc.status_code, "http_error")
        return _error_response(exc.status_code, code, str(exc.detail), exc.headers)

    async def on_transient(_: Request, exc: Exception) -> Response:
        return _error_response(503, "unavailable", str(exc)[:500], {"Retry-After": "1"})

    async def last_resort(request: Request, exc: Exception) -> Response:
        # Runs in ServerErrorMiddleware, which re-raises afterwards so the server logs the bug.
        if isinstance(exc, TransientIOError):
            return await on_transient(request, exc)
        return _error_response(500, "internal", f"internal error: {type(exc).__name__}")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(TransientIOError, on_transient)
    app.add_exception_handler(Exception, last_resort)
