"""`/api/ticks` (the tick cache, both key layouts) and the UI's static files (gzip, cache
headers), on a real uvicorn over a real Redis laid out as keys.py says."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from jsonschema import Draft202012Validator
from starlette.requests import Request

import fxconnector
from fxconnector.core.contracts import ContractName, load_schema
from fxconnector.runtime.publish.http_api import json_response
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.static_ui import APP_CACHE, VENDOR_CACHE
from tests.redis_server import RedisServer
from tests.runtime.publish.api_harness import T0, Stack, running_stack

pytestmark = pytest.mark.redis

PACKAGE_UI = Path(fxconnector.__file__).parent / "ui" / "web"
EURUSD_TICK = b'{"symbol":"EURUSD","bid":1.10001,"ask":1.10012,"ts_ms":%d}' % T0
GBPUSD_TICK = b'{"symbol":"GBPUSD","bid":1.27001,"ask":1.27019,"ts_ms":%d}' % (T0 + 5)
TICK_SCHEMA = Draft202012Validator(load_schema(ContractName.TICK_V1))


@pytest.fixture(params=[False, True], ids=["single-node", "cluster"])
def stack(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[Stack]:
    keys = SurfaceKeys("fxtest", cluster=request.param)
    with running_stack(redis_server, keys=keys, ui_dir=PACKAGE_UI) as running:
        yield running


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=5) as client:
        yield client


def put_tick(stack: Stack, symbol: str, tick: bytes) -> None:
    """Write a tick the way the surface writer does, in the stack's layout."""
    if stack.keys.cluster:
        stack.writer.client.set(stack.keys.tick(symbol), tick)
    else:
        stack.writer.client.hset(stack.keys.price_tik, symbol, tick)


def test_ticks_are_the_cached_last_ticks_in_served_order(stack: Stack, http: httpx.Client) -> None:
    assert http.get("/api/ticks").json() == {"ticks": []}
    put_tick(stack, "GBPUSD", GBPUSD_TICK)
    answer = http.get("/api/ticks")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "ticks": [{"symbol": "GBPUSD", "bid": 1.27001, "ask": 1.27019, "ts_ms": T0 + 5}]
    }
    put_tick(stack, "EURUSD", EURUSD_TICK)
    ticks = http.get("/api/ticks").json()["ticks"]
    assert [tick["symbol"] for tick in ticks] == ["EURUSD", "GBPUSD"]
    for tick in ticks:
        TICK_SCHEMA.validate(tick)
    only = http.get("/api/ticks", params={"symbols": "GBPUSD,GBPUSD"}).json()["ticks"]
    assert [tick["symbol"] for tick in only] == ["GBPUSD"]


def test_an_invalid_cached_tick_is_left_out_and_counted(stack: Stack, http: httpx.Client) -> None:
    put_tick(stack, "EURUSD", b'{"symbol":"EURUSD","bid":-1,"ask":1.1,"ts_ms":1}')
    put_tick(stack, "GBPUSD", EURUSD_TICK)  # a tick of another symbol under GBPUSD's key
    assert http.get("/api/ticks").json() == {"ticks": []}
    assert stack.deps.rejects.count == 2
    messages = [sample.message for sample in stack.deps.rejects.samples]
    assert any("a tick of EURUSD under the key of GBPUSD" in m for m in messages), messages
    assert {sample.code for sample in stack.deps.rejects.samples} == {"redis.invalid_tick"}


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("symbols=XAUUSD", 404, "unknown_symbol"),
        ("symbols=EURUSD,", 422, "invalid_parameter"),
        ("symbol=EURUSD", 400, "unknown_parameter"),
    ],
)
def test_bad_ticks_queries_are_json_errors(
    http: httpx.Client, query: str, status: int, code: str
) -> None:
    answer = http.get(f"/api/ticks?{query}")
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code


def test_static_files_are_gzipped_when_accepted_with_cache_headers(http: httpx.Client) -> None:
    source = (PACKAGE_UI / "vendor" / "lightweight-charts.standalone.production.js").read_bytes()
    plain = http.get(
        "/vendor/lightweight-charts.standalone.production.js",
        headers={"accept-encoding": "identity"},
    )
    assert plain.status_code == 200
    assert "content-encoding" not in plain.headers
    assert plain.content == source
    assert plain.headers["cache-control"] == VENDOR_CACHE
    assert plain.headers["vary"] == "Accept-Encoding"
    packed = http.get(
        "/vendor/lightweight-charts.standalone.production.js",
        headers={"accept-encoding": "gzip, br"},
    )
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) < len(source) // 2
    assert packed.content == source  # httpx decodes it
    assert packed.headers["etag"] == plain.headers["etag"]
    assert packed.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    for page in ("/", "/app.js", "/style.css"):
        answer = http.get(page, headers={"accept-encoding": "gzip"})
        assert answer.status_code == 200, page
        assert answer.headers["cache-control"] == APP_CACHE, page
        assert answer.headers["content-encoding"] == "gzip", page
        # no-cache means revalidate: the same file is a 304 without a body
        again = http.get(page, headers={"if-none-match": answer.headers["etag"]})
        assert again.status_code == 304, page
        assert again.content == b""
    png = http.get("/vendor/favicon-32x32.png", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in png.headers
    assert png.content == (PACKAGE_UI / "vendor" / "favicon-32x32.png").read_bytes()


def request_with(accept_encoding: str | None) -> Request:
    headers = [] if accept_encoding is None else [(b"accept-encoding", accept_encoding.encode())]
    return Request({"type": "http", "method": "GET", "path": "/api/status", "headers": headers})


def test_json_answers_are_gzipped_when_large_and_accepted() -> None:
    large = b'{"ticks":[' + b",".join([EURUSD_TICK] * 40) + b"]}"
    small = EURUSD_TICK
    packed = json_response(request_with("gzip"), large)
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(packed.body) == large
    for request, body in [
        (request_with(None), large),
        (request_with("gzip;q=0"), large),
        (request_with("gzip"), small),
    ]:
        plain = json_response(request, body)
        assert "content-encoding" not in plain.headers
        assert plain.headers["vary"] == "Accept-Encoding"
        assert plain.body == body
