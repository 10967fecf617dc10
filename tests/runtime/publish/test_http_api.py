"""The read-only HTTP API, served by a real uvicorn over a real Redis laid out as keys.py says."""

from __future__ import annotations

import gzip
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from jsonschema import Draft202012Validator
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

import fxconnector
from fxconnector.core.contracts import ContractName, load_schema
from fxconnector.core.model.bar import OhlcvEvent, StoredFinal
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from tests.redis_server import RedisServer
from tests.runtime.publish.api_harness import T0, Stack, bar, running_stack, series
from tests.runtime.publish.test_exec_routes import EXEC_PATHS

pytestmark = pytest.mark.redis

M1 = Timeframe.M1


@pytest.fixture
def stack(redis_server: RedisServer) -> Iterator[Stack]:
    with running_stack(redis_server) as stack:
        yield stack


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=5) as client:
        yield client


@pytest.fixture(scope="module")
def shared_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One stack for the read-only tests that only look at error answers."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        with running_stack(server) as stack, httpx.Client(base_url=stack.url, timeout=5) as client:
            yield client
    finally:
        server.kill()


def bars_of(response: httpx.Response) -> list[OhlcvEvent]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return msgspec.json.decode(msgspec.json.encode(response.json()["bars"]), type=list[OhlcvEvent])


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]


def publish_all(stack: Stack, events: list[OhlcvEvent], keep: int = 5000) -> str:
    cursor = ""
    for event in events:
        cursor = stack.writer.publish(event, keep=keep)
    return cursor


# --- bars -------------------------------------------------------------------------------------


def test_tail_comes_from_the_snapshot_with_its_cursor(stack: Stack, http: httpx.Client) -> None:
    finals = series("EURUSD", M1, 600)
    cursor = publish_all(stack, finals)

    response = http.get("/api/bars", params={"symbol": "EURUSD", "tf": "1m"})
    assert bars_of(response) == finals[-500:]  # default limit
    body = response.json()
    assert list(body) == ["symbol", "tf", "bars", "preview", "cursor"]
    assert (body["symbol"], body["tf"], body["preview"], body["cursor"]) == (
        "EURUSD",
        "1m",
        None,
        cursor,
    )
    assert (
        bars_of(http.get("/api/bars", params={"symbol": "EURUSD", "tf": "1m", "limit": 7}))
        == (finals[-7:])
    )
    assert stack.connector.history_calls == 0  # the snapshot had enough

    everything = http.get("/api/bars", params={"symbol": "EURUSD", "tf": "1m", "limit": 5000})
    assert bars_of(everything) == finals  # the SSOT was asked and had nothing older
    assert stack.connector.history_calls == 1


def test_tail_falls_back_to_history_for_older_bars(stack: Stack, http: httpx.Client) -> None:
    ssot = series("EURUSD", M1, 1000)
    repaired = StoredFinal(**{**msgspec.structs.asdict(ssot[10]), "rev": 1, "reason": "repair"})
    ssot[10] = repaired
    stack.connector.finals[("EURUSD", M1)] = ssot
    cursor = publish_all(stack, ssot[-100:], keep=100)  # the snapshot holds the newest 100

    response = http.get("/api/bars", params={"symbol": "EURUSD", "tf": "1m", "limit": 300})
    assert (
        bars_of(response) == [b.event() if isinstance(b, StoredFinal) else b for b in ssot][-300:]
    )
    assert response.json()["cursor"] == cursor
    whole = http.get("/api/bars", params={"symbol": "EURUSD", "tf": "1m", "limit": 5000}).json()
    assert len(whole["bars"]) == 1000
    assert whole["bars"][10] == msgspec.to_builtins(repaired.event())  # no storage-only reason
    opens = [b["open_ms"] for b in whole["bars"]]
    assert opens == sorted(set(opens))


def test_tail_without_snapshot_is_history_with_no_cursor(stack: Stack, http: httpx.Client) -> None:
    ssot = series("GBPUSD", Timeframe.M5, 50)
    stack.connector.finals[("GBPUSD", Timeframe.M5)] = ssot
    response = http.get("/api/bars", params={"symbol": "GBPUSD", "tf": "5m", "limit": 20})
    assert bars_of(response) == ssot[-20:]
    assert response.json()["cursor"] is None
    empty = http.get("/api/bars", params={"symbol": "EURUSD", "tf": "5m"})
    assert empty.json() == {
        "symbol": "EURUSD",
        "tf": "5m",
        "bars": [],
        "preview": None,
        "cursor": None,
    }


def test_ranges_come_from_history(stack: Stack, http: httpx.Client) -> None:
    ssot = series("EURUSD", M1, 100)
    stack.connector.finals[("EURUSD", M1)] = ssot
    publish_all(stack, ssot[-10:])
    query: dict[str, Any] = {"symbol": "EURUSD", "tf": "1m"}

    window = http.get(
        "/api/bars", params={**query, "from_ms": T0 + 10 * MINUTE_MS, "to_ms": T0 + 20 * MINUTE_MS}
    )
    assert bars_of(window) == ssot[10:20]  # [from_ms, to_ms)
    assert window.json()["cursor"] is None
    newest = http.get("/api/bars", params={**query, "to_ms": T0 + 20 * MINUTE_MS, "limit": 3})
    assert bars_of(newest) == ssot[17:20]  # the newest `limit` of the range
    since = http.get("/api/bars", params={**query, "from_ms": T0 + 95 * MINUTE_MS})
    assert bars_of(since) == ssot[95:]
    forward = http.get("/api/bars", params={**query, "from_ms": T0 + 50 * MINUTE_MS, "limit": 4})
    assert bars_of(forward) == ssot[50:54]  # paging forward: the first `limit` from from_ms
    assert bars_of(http.get("/api/bars", params={**query, "from_ms": T0, "to_ms": T0})) == []


def test_preview_only_when_asked_and_after_the_last_final(stack: Stack, http: httpx.Client) -> None:
    finals = series("EURUSD", M1, 5)
    stack.connector.finals[("EURUSD", M1)] = finals
    publish_all(stack, finals)
    query: dict[str, Any] = {"symbol": "EURUSD", "tf": "1m"}
    preview = bar("EURUSD", M1, T0 + 5 * MINUTE_MS, final=False)
    stack.connector.previews[("EURUSD", M1)] = preview

    with_preview = http.get("/api/bars", params={**query, "include_preview": "true"}).json()
    assert with_preview["preview"] == msgspec.to_builtins(preview)
    assert len(with_preview["bars"]) == 5
    assert http.get("/api/bars", params=query).json()["preview"] is None
    assert (
        http.get("/api/bars", params={**query, "include_preview": "false"}).json()["preview"]
        is None
    )

    stack.connector.previews[("EURUSD", M1)] = bar("EURUSD", M1, T0 + 4 * MINUTE_MS, final=False)
    stale = http.get("/api/bars", params={**query, "include_preview": "1"}).json()
    assert stale["preview"] is None  # NoMix: that bucket already has a final

    stack.connector.previews[("EURUSD", M1)] = preview
    in_range = {**query, "include_preview": "true", "from_ms": T0}
    assert http.get("/api/bars", params=in_range).json()["preview"] == msgspec.to_builtins(preview)
    before = {**in_range, "to_ms": T0 + 5 * MINUTE_MS}
    assert http.get("/api/bars", params=before).json()["preview"] is None  # outside the range


def test_cached_window_follows_new_finals_and_revisions(stack: Stack, http: httpx.Client) -> None:
    finals = series("EURUSD", M1, 20)
    publish_all(stack, finals)
    query = {"symbol": "EURUSD", "tf": "1m", "limit": "5"}
    assert bars_of(http.get("/api/bars", params=query)) == finals[-5:]

    newer = bar("EURUSD", M1, T0 + 20 * MINUTE_MS)
    cursor = stack.writer.publish(newer)
    revision = bar("EURUSD", M1, T0 + 18 * MINUTE_MS, rev=1)
    cursor = stack.writer.publish(revision)
    expected = [*finals[-4:-2], revision, finals[-1], newer]
    deadline = time.monotonic() + 3
    while True:
        response = http.get("/api/bars", params=query)
        if response.json()["cursor"] == cursor or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert response.json()["cursor"] == cursor
    assert bars_of(response) == expected


def _raw(http: httpx.Client, params: dict[str, Any], encoding: str | None) -> httpx.Response:
    """The answer with its body as sent (not decoded), asking with `encoding` (None: no header)."""
    request = http.build_request("GET", "/api/bars", params=params)
    if encoding is None:
        del request.headers["accept-encoding"]
    else:
        request.headers["accept-encoding"] = encoding
    response = http.send(request, stream=True)
    try:
        response._content = b"".join(response.iter_raw())
    finally:
        response.close()
    return response


def test_bars_are_gzipped_when_asked_and_only_then(stack: Stack, http: httpx.Client) -> None:
    finals = series("EURUSD", M1, 600)
    stack.connector.finals[("EURUSD", M1)] = finals
    publish_all(stack, finals[100:])
    stack.connector.previews[("EURUSD", M1)] = bar("EURUSD", M1, T0 + 600 * MINUTE_MS, final=False)
    queries: list[dict[str, Any]] = [
        {"symbol": "EURUSD", "tf": "1m", "limit": 1000},  # snapshot + history, cached
        {"symbol": "EURUSD", "tf": "1m", "limit": 50, "include_preview": "true"},
        {"symbol": "EURUSD", "tf": "1m", "from_ms": T0, "limit": 20},  # a range: not cached
        {"symbol": "EURUSD", "tf": "1m", "from_ms": T0, "include_preview": "true"},
    ]
    for query in queries:
        plain = _raw(http, query, None)
        assert plain.status_code == 200
        assert plain.headers["vary"] == "Accept-Encoding"
        assert "content-encoding" not in plain.headers
        body = msgspec.json.decode(plain.content)
        assert list(body) == ["symbol", "tf", "bars", "preview", "cursor"]
        for refused in ("identity", "gzip;q=0", "br", "*;q=0", "gzip;q=0, *"):
            assert _raw(http, query, refused).content == plain.content, refused
        for asked in ("gzip", "br, gzip;q=0.5", "GZIP", "*", "deflate, gzip, br"):
            for _ in range(2):  # compressed once, then from the cache
                packed = _raw(http, query, asked)
                assert packed.headers["content-encoding"] == "gzip", asked
                assert packed.headers["vary"] == "Accept-Encoding"
                assert int(packed.headers["content-length"]) == len(packed.content)
                assert gzip.decompress(packed.content) == plain.content, asked
        if query.get("include_preview"):
            assert body["preview"] is not None
    whole = httpx.Response(
        200,
        headers={"content-type": "application/json"},
        content=gzip.decompress(_raw(http, queries[0], "gzip").content),
    )
    assert bars_of(whole) == finals  # 500 from the snapshot, the 100 older ones from the SSOT


# --- errors -----------------------------------------------------------------------------------

BAD_BARS_QUERIES = [
    ("symbol=EURUSD", 422, "missing_parameter"),
    ("tf=1m", 422, "missing_parameter"),
    ("symbol=XAUUSD&tf=1m", 404, "unknown_symbol"),
    ("symbol=eurusd&tf=1m", 404, "unknown_symbol"),
    ("symbol=EURUSD&tf=2m", 404, "unknown_timeframe"),
    ("symbol=EURUSD&tf=1h", 404, "unknown_timeframe"),  # a timeframe, but not served
    ("symbol=EURUSD&tf=1m&limit=abc", 422, "invalid_parameter"),
    ("symbol=EURUSD&tf=1m&limit=-5", 422, "invalid_parameter"),
    ("symbol=EURUSD&tf=1m&limit=0", 422, "invalid_parameter"),
    ("symbol=EURUSD&tf=1m&limit=5001", 422, "invalid_parameter"),
    ("symbol=EURUSD&tf=1m&limit=1.5", 422, "invalid_parameter"),
    ("symbol=EURUSD&tf=1m&limit=", 422, "invalid_parameter"),
    ("symbol=EURUSD&tf=1m&from_ms=-1", 422, "invalid_parameter"),
    ("symbol=EURUSD&tf=1m&to_ms=soon", 422, "invalid_parameter"),
    ("symbol=EURUSD&tf=1m&from_ms=99999999999999999999", 422, "invalid_parameter"),
    ("symbol=EURUSD&tf=1m&to_ms=4102444800001", 422, "invalid_parameter"),
    ("symbol=EURUSD&tf=1m&include_preview=maybe", 422, "invalid_parameter"),
    ("symbol=EURUSD&tf=1m&from_ms=2000&to_ms=1000", 400, "invalid_range"),
    ("symbol=EURUSD&tf=1m&tfs=1m", 400, "unknown_parameter"),
    ("symbol=EURUSD&tf=1m&limit=1&limit=2", 400, "repeated_parameter"),
]


@pytest.mark.parametrize(("query", "status", "code"), BAD_BARS_QUERIES)
def test_bad_bars_parameters_get_the_json_error_shape(
    shared_http: httpx.Client, query: str, status: int, code: str
) -> None:
    assert_error(shared_http.get(f"/api/bars?{query}"), status, code)


GET_PATHS = [
    "/api/bars?symbol=EURUSD&tf=1m",
    "/api/status",
    "/api/health/live",
    "/api/health/ready",
    "/api/symbols",
    "/api/ticks",
    "/metrics",
    "/api/stream",
    "/openapi.json",
]


@pytest.mark.parametrize("path", GET_PATHS)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_only_get_is_allowed(shared_http: httpx.Client, path: str, method: str) -> None:
    response = shared_http.request(method, path)
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


@pytest.mark.parametrize("path", ["/api/status", "/api/symbols", "/api/health/live", "/metrics"])
def test_unknown_parameters_are_refused_everywhere(shared_http: httpx.Client, path: str) -> None:
    assert_error(shared_http.get(path, params={"verbose": "1"}), 400, "unknown_parameter")


def test_unknown_paths_are_json_404(shared_http: httpx.Client) -> None:
    assert_error(shared_http.get("/api/nothing"), 404, "not_found")
    assert_error(shared_http.get("/"), 404, "not_found")  # no UI configured


def test_redis_down_is_503_json_and_ranges_still_work(stack: Stack, http: httpx.Client) -> None:
    finals = series("EURUSD", M1, 30)
    stack.connector.finals[("EURUSD", M1)] = finals
    publish_all(stack, finals)
    cached = {"symbol": "EURUSD", "tf": "1m", "limit": "10"}
    assert bars_of(http.get("/api/bars", params=cached)) == finals[-10:]

    stack.redis_server.kill()
    assert_error(http.get("/api/bars", params={**cached, "limit": "11"}), 503, "unavailable")
    time.sleep(0.15)  # past the cached window's re-check period
    down = http.get("/api/bars", params=cached)
    assert_error(down, 503, "unavailable")
    assert down.headers["retry-after"] == "1"
    ranged = http.get("/api/bars", params={**cached, "from_ms": T0})
    assert bars_of(ranged) == finals[:10]
    assert http.get("/api/status").status_code == 200
    assert http.get("/api/health/live").status_code == 200

    stack.redis_server.restart()
    stack.writer.snapshots.clear()
    cursor = publish_all(stack, finals[-3:])
    back = http.get("/api/bars", params=cached)
    assert bars_of(back) == finals[-10:]  # 3 from the rebuilt snapshot, 7 older from the SSOT
    assert back.json()["cursor"] == cursor


# --- the other endpoints ----------------------------------------------------------------------


def test_status_is_a_valid_status_v2(http: httpx.Client) -> None:
    response = http.get("/api/status")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    Draft202012Validator(load_schema(ContractName.STATUS_V2)).validate(response.json())


def test_status_of_one_symbol_is_a_valid_status_symbol_v1(shared_http: httpx.Client) -> None:
    response = shared_http.get("/api/status", params={"symbol": "GBPUSD"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    Draft202012Validator(load_schema(ContractName.STATUS_SYMBOL_V1)).validate(response.json())
    assert response.json()["symbol"] == "GBPUSD"


@pytest.mark.parametrize(
    ("symbol", "status", "code"),
    [
        ("USDJPY", 404, "unknown_symbol"),
        ("eurusd", 400, "bad_request"),
        ("", 400, "bad_request"),
        ("EUR USD", 400, "bad_request"),
        ("E" * 40, 400, "bad_request"),
    ],
)
def test_status_of_an_unknown_or_bad_symbol_is_a_json_error(
    shared_http: httpx.Client, symbol: str, status: int, code: str
) -> None:
    assert_error(shared_http.get("/api/status", params={"symbol": symbol}), status, code)
    twice = shared_http.get("/api/status?symbol=EURUSD&symbol=EURUSD")
    assert_error(twice, 400, "repeated_parameter")


def test_health_symbols_and_metrics(stack: Stack, http: httpx.Client) -> None:
    live = http.get("/api/health/live")
    assert (live.status_code, live.json()) == (200, {"status": "live"})
    assert http.get("/api/health/ready").json() == {"status": "ready"}
    stack.connector.ready_reason = "ssot is empty"
    not_ready = http.get("/api/health/ready")
    assert (not_ready.status_code, not_ready.json()) == (
        503,
        {"status": "not_ready", "reason": "ssot is empty"},
    )
    assert http.get("/api/symbols").json() == {
        "symbols": ["EURUSD", "GBPUSD"],
        "timeframes": ["1m", "5m"],
    }
    metrics = http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "fxconnector_test_requests_total 1.0" in metrics.text


def test_ui_is_served_at_the_root(redis_server: RedisServer, tmp_path: Path) -> None:
    ui = tmp_path / "ui"
    ui.mkdir()
    (ui / "index.html").write_text("<html><body>chart</body></html>", "utf-8")
    (ui / "app.js").write_text("console.log('hi');", "utf-8")
    with (
        running_stack(redis_server, ui_dir=ui) as stack,
        httpx.Client(base_url=stack.url, timeout=5) as http,
    ):
        index = http.get("/")
        assert index.status_code == 200
        assert "chart" in index.text
        assert index.headers["content-type"].startswith("text/html")
        assert http.get("/app.js").status_code == 200
        assert http.get("/api/symbols").status_code == 200
        assert_error(http.get("/missing.js"), 404, "not_found")
        assert_error(http.post("/"), 405, "method_not_allowed")


PACKAGE_UI = Path(fxconnector.__file__).parent / "ui" / "web"


def test_the_docs_page_and_its_assets_come_from_the_package(redis_server: RedisServer) -> None:
    with (
        running_stack(redis_server, ui_dir=PACKAGE_UI) as stack,
        httpx.Client(base_url=stack.url, timeout=5) as http,
    ):
        page = http.get("/api/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert not re.search(r"https?://", page.text)  # nothing from a CDN: it works offline
        assets = re.findall(r"(?:src|href)=['\"]([^'\"]+)['\"]", page.text)
        assert sorted(assets) == [
            "../vendor/favicon-32x32.png",
            "../vendor/swagger-ui-bundle.js",
            "../vendor/swagger-ui.css",
        ]
        for asset in assets:
            served = http.get(httpx.URL(str(page.url)).join(asset))
            assert served.status_code == 200, asset
            assert served.content == (PACKAGE_UI / "vendor" / Path(asset).name).read_bytes()
        assert "url: '../openapi.json'" in page.text
        assert http.get(httpx.URL(str(page.url)).join("../openapi.json")).json()["openapi"]


# --- OpenAPI and fuzzing ----------------------------------------------------------------------

FUZZ_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def fuzz(operation: APIOperation[Any, Any, Any, Any], mode: GenerationMode, base_url: str) -> None:
    """A bounded Hypothesis run of one operation: never a 5xx, always as documented."""
    checks = [*FUZZ_CHECKS, negative_data_rejection] if mode.is_negative else FUZZ_CHECKS

    @settings(
        max_examples=50,
        deadline=timedelta(seconds=2),
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: Case[Any]) -> None:
        response = case.call(base_url=base_url, timeout=5)
        assert response.status_code < 500, (case.path, case.query, response.text)
        case.validate_response(response, checks=checks)

    call()


def test_openapi_is_valid_and_fuzzing_finds_no_server_error(
    stack: Stack, http: httpx.Client
) -> None:
    for symbol in ("EURUSD", "GBPUSD"):
        for tf in (M1, Timeframe.M5):
            finals = series(symbol, tf, 40)
            stack.connector.finals[(symbol, tf)] = finals
            publish_all(stack, finals[-25:])
            stack.connector.previews[(symbol, tf)] = bar(symbol, tf, T0 + 40 * tf.ms, final=False)
    document = http.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()

    fuzzed = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        if operation.path == "/api/stream":
            continue  # an endless stream; its parameters are tested in test_push
        fuzzed.append(operation.path)
        modes = [GenerationMode.POSITIVE]
        if operation.query:
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            fuzz(operation, mode, stack.url)
    assert sorted(fuzzed) == sorted(
        [
            "/api/bars",
            "/api/smc",
            "/api/status",
            "/api/status/processes",
            "/api/health/live",
            "/api/health/ready",
            "/api/symbols",
            "/api/ticks",
            "/metrics",
            *EXEC_PATHS,
        ]
    )
