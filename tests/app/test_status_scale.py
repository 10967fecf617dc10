"""Status at 1,000 symbols (issue 12): the connector's own wiring (config, composition, the
status loop's write, the API deps) over a real Redis and a real HTTP server. The summary stays
under its 8 KiB rail and counts every symbol; each symbol's detail is in its own key and at
`/api/status?symbol=`."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
import redis.asyncio
from jsonschema import Draft202012Validator

from fxconnector.app import live_status
from fxconnector.app.api_wiring import api_deps
from fxconnector.app.composition import Parts, build
from fxconnector.app.live_loops import LiveState
from fxconnector.config.schema import Config
from fxconnector.config.secrets import Secrets
from fxconnector.core.contracts import ContractName, load_schema
from fxconnector.core.coverage import CoverageCounts
from fxconnector.core.model.status import StatusV2, SymbolStatus
from fxconnector.core.time_geom import MINUTE_MS
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.publish.http_api import create_app
from fxconnector.runtime.publish.redis_connect import connect_redis
from fxconnector.runtime.publish.redis_surface import RedisSurface
from fxconnector.runtime.publish.surface_reader import SurfaceReader
from fxconnector.runtime.status.builder import HARD_LIMIT_BYTES
from tests.app.test_cli_cmd import cli
from tests.redis_server import RedisServer
from tests.runtime.publish.api_harness import LiveServer
from tests.runtime.store.test_store_suite import make_bar
from tests.sinks import RecordingSink

pytestmark = pytest.mark.redis

START = 1_709_733_600_000  # Wednesday 2024-03-06 14:00 UTC: the market is open
SYMBOLS = [f"S{i:03d}XX" for i in range(1000)]
NO_FINAL = SYMBOLS[:2]  # nothing stored
LAGGING = SYMBOLS[2:5]  # their fast path starts 30 minutes back
MISSING = {SYMBOLS[i]: i for i in range(10, 17)}  # coverage with missing minutes


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    config = msgspec.convert(
        {
            "workdir": str(tmp_path),
            # The sim answers locally: a budget and a call allowance that plan 1,000 symbols
            # every minute (the default budget is refused at start, see test_composition).
            "broker": {
                "symbols": SYMBOLS,
                "history_requests_per_min": 6000,
                "history_call_allowance_ms": 20,
            },
            "surface": {"namespace": "scale"},
        },
        Config,
    )
    built = build(config, Secrets(), ManualClock(START))
    built.store.open()
    try:
        yield built
    finally:
        built.store.close()


def test_a_thousand_symbols_status_is_bounded_counted_and_served_per_symbol(
    parts: Parts, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    parts.store.append(
        [make_bar(symbol=s, open_ms=START - 2 * MINUTE_MS) for s in SYMBOLS if s not in NO_FINAL]
    )
    parts.store.flush()
    starts = {s: START - (30 if s in LAGGING else 1) * MINUTE_MS for s in SYMBOLS}
    pipeline = parts.make_pipeline(RecordingSink(), starts)
    live = LiveState()
    live.coverage = {
        s: CoverageCounts(final=1400, quiet=30, missing=MISSING.get(s, 0), closed=10)
        for s in SYMBOLS
    }
    keys = parts.keys

    async def write() -> bool:
        client = connect_redis(redis_server.url, Secrets())
        surface = make_surface(client, parts)
        try:
            return await live_status.write_status(parts, pipeline, surface, live, START)
        finally:
            await client.aclose()

    assert asyncio.run(write()) is True  # alone in its namespace: NS:status written too

    # Redis: the summary (under both keys), bounded and counting every symbol.
    with redis_server.client() as r:
        process = parts.status_builder.process_id
        summary = r.get(keys.status_process(process))
        assert isinstance(summary, bytes)
        assert r.get(keys.status) == summary
        assert len(summary) <= HARD_LIMIT_BYTES
        Draft202012Validator(load_schema(ContractName.STATUS_V2)).validate(json.loads(summary))
        decoded = msgspec.json.decode(summary, type=StatusV2)
        assert decoded.process.id == process
        counts = decoded.symbols
        assert (counts.total, counts.current, counts.lagging, counts.no_final) == (
            1000,
            995,
            3,
            2,
        )
        assert (counts.stalled, counts.with_missing_minutes) == (0, 7)
        assert counts.coverage.missing == sum(MISSING.values())
        assert [w.symbol for w in counts.worst[:5]] == [*NO_FINAL, *LAGGING]
        # Every symbol's detail in its own key, valid, with an expiry.
        validator = Draft202012Validator(load_schema(ContractName.STATUS_SYMBOL_V1))
        details = dict(zip(SYMBOLS, r.mget([keys.status_symbol(s) for s in SYMBOLS]), strict=True))
        for symbol, raw in details.items():
            assert isinstance(raw, bytes), symbol
            validator.validate(json.loads(raw))
            assert msgspec.json.decode(raw, type=SymbolStatus).symbol == symbol
        assert 0 < r.ttl(keys.status_symbol("S999XX")) <= 5
        assert json.loads(details["S003XX"])["state"] == "lagging"
        assert json.loads(details["S010XX"])["coverage"]["missing"] == 10

    # HTTP: the real app with the connector's own deps serves the same detail.
    client = connect_redis(redis_server.url, Secrets())
    reader = SurfaceReader(client, keys)
    deps = api_deps(parts, pipeline, make_surface(client, parts), live, reader)
    server = LiveServer(create_app(deps), cleanup=client.aclose)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            served = http.get("/api/status")
            assert served.status_code == 200
            assert len(served.content) <= HARD_LIMIT_BYTES
            assert served.json()["symbols"]["total"] == 1000
            for symbol in ("S000XX", "S003XX", "S500XX", "S999XX"):
                one = http.get("/api/status", params={"symbol": symbol})
                assert one.status_code == 200
                assert one.content == details[symbol]
            unknown = http.get("/api/status", params={"symbol": "EURUSD"})
            assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_symbol")
            bad = http.get("/api/status", params={"symbol": "s000xx"})
            assert (bad.status_code, bad.json()["error"]["code"]) == (400, "bad_request")
            processes = http.get("/api/status/processes").json()["processes"]
            assert [p["process"]["id"] for p in processes] == [process]
        # The CLI: every symbol counted, the worst named, one symbol's detail on demand.
        where = server.url.removeprefix("http://")
        _code, out, _err = cli(capsys, "status", "--http", where)
        assert "symbols   1000: 995 current, 3 lagging, 0 stalled, 2 no final yet" in out
        assert re.search(r"worst +S000XX +no_final", out), out
        assert len(out.splitlines()) < 40
        code, out, _err = cli(capsys, "status", "--http", where, "--symbol", "S003XX")
        assert (code, out.split()[:2]) == (0, ["S003XX", "lagging"])
        code, out, _err = cli(capsys, "status", "--http", where, "--processes")
        assert (code, out.split()[0]) == (0, process)
    finally:
        server.stop()


def make_surface(client: redis.asyncio.Redis, parts: Parts) -> RedisSurface:
    return RedisSurface(
        client,
        parts.keys,
        parts.tail,
        events_retention_s=600,
        snapshot_bars=10,
        preview_interval_ms=0,
        clock=parts.clock,
    )
