"""The push fan-out with many real clients over a real uvicorn and a real Redis: every client
gets every selected event once, slow clients are cut off with a reason and resume by cursor,
invalid events never reach a client, and the cluster layout's per-symbol streams are merged."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine, Iterator
from functools import partial
from typing import Any, TypeVar

import httpx
import pytest
from bench.push_clients import Record, SseClient, open_sse, run_ws

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish.http_common import PushSettings
from fxconnector.runtime.publish.keys import STREAM_FIELD, SurfaceKeys
from fxconnector.runtime.publish.surface_reader import parse_stream_id
from tests.redis_server import RedisServer
from tests.runtime.publish.api_harness import SYMBOLS, T0, Stack, bar, running_stack

pytestmark = pytest.mark.redis
T = TypeVar("T")

WAIT_S = 20.0
PUSH = PushSettings(heartbeat_s=0.5, block_ms=200, backoff_max_s=0.5, window=1000)


@pytest.fixture
def stack(redis_server: RedisServer) -> Iterator[Stack]:
    with running_stack(redis_server, push=PUSH) as stack:
        yield stack


_OPENED: list[asyncio.Transport] = []


async def sse(port: int, query: dict[str, str], **options: Any) -> SseClient:
    """An SSE client, closed when `run` ends."""
    transport, client = await open_sse(port, query, **options)
    _OPENED.append(transport)
    return client


_TASKS: list[asyncio.Task[None]] = []


def spawn(work: Coroutine[Any, Any, None]) -> None:
    """A client task, ended when `run` ends."""
    _TASKS.append(asyncio.create_task(work))


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, then close every client `main` opened and end its other tasks."""

    async def wrapped() -> T:
        try:
            return await main
        finally:
            for transport in _OPENED:
                transport.close()
            _OPENED.clear()
            _TASKS.clear()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await asyncio.sleep(0.05)  # the transports' close callbacks

    return asyncio.run(wrapped())


def events(count: int, start: int = 0) -> list[OhlcvEvent]:
    """Finals and previews of both symbols and timeframes, interleaved."""
    out = []
    for i in range(start, start + count):
        tf = Timeframe.M1 if i % 3 else Timeframe.M5
        out.append(bar(SYMBOLS[i % 2], tf, T0 + i * tf.ms, final=bool(i % 4)))
    return out


def expected_for(stack: Stack, query: dict[str, str], after: str = "0-0") -> list[str]:
    symbols = set(query.get("symbols", ",".join(SYMBOLS)).split(","))
    tfs = set(query.get("tfs", "1m,5m").split(","))
    out = []
    for entry_id, data in stack.writer.stream(after=after):
        event = json.loads(data)
        if event["symbol"] in symbols and event["tf"] in tfs:
            out.append(entry_id)
    return out


def has_at_least(record: Record, count: int) -> bool:
    return len(record.ids) >= count


async def until(check: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WAIT_S):
        while not check():  # noqa: ASYNC110 - a condition over many clients, no one event
            await asyncio.sleep(0.02)
    assert check(), what


async def poll_bars(url: str, statuses: list[int], stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as http:
        while not stop.is_set():
            response = await http.get("/api/bars", params={"symbol": "EURUSD", "tf": "1m"})
            statuses.append(response.status_code)
            await asyncio.sleep(0.01)


def test_hundreds_of_sse_and_websocket_clients_get_every_event_once(stack: Stack) -> None:
    queries = [{}, {"symbols": "EURUSD"}, {"tfs": "1m"}, {"symbols": "GBPUSD", "tfs": "5m"}]
    before = [stack.writer.publish(e) for e in events(30)]

    async def main() -> tuple[list[tuple[dict[str, str], Record]], list[int]]:
        clients: list[tuple[dict[str, str], Record]] = []
        for i in range(240):
            query = dict(queries[i % 4])
            if i % 2:
                query["cursor"] = before[9]  # half resume from an older cursor
            client = await sse(stack.server.port, query)
            clients.append((query, client.record))
        ws_records = [(dict(queries[i % 4], cursor="0-0"), Record()) for i in range(40)]
        for query, record in ws_records:
            spawn(run_ws(stack.server.port, query, record))
        statuses: list[int] = []
        stop = asyncio.Event()
        poller = asyncio.create_task(poll_bars(stack.url, statuses, stop))
        await until(lambda: all(r.status == 200 for _, r in clients), "SSE connected")
        await until(lambda: all(r.status == 101 for _, r in ws_records), "WS connected")
        # Every no-cursor SSE client is live once it got a heartbeat-free start: publish live.
        await asyncio.sleep(0.3)
        for burst in range(5):
            for event in events(20, start=30 + burst * 20):
                stack.writer.publish(event)
            await asyncio.sleep(0.05)
        records = clients + ws_records
        for query, record in records:
            after = query.get("cursor", before[-1])
            want = len(expected_for(stack, query, after))
            await until(partial(has_at_least, record, want), f"{query} got everything")
        await asyncio.sleep(0.2)  # nothing more (no duplicate) arrives
        stop.set()
        await poller
        return records, statuses

    records, statuses = run(main())
    assert wait_for_metric(stack, "fxconnector_push_clients", 0.0)  # every client left
    for query, record in records:
        after = query.get("cursor", before[-1])
        assert record.ids == expected_for(stack, query, after), query  # no gap, no duplicate
        assert record.errors == []
    stored = dict(stack.writer.stream())
    assert all(stored[i] == d for _, r in records for i, d in zip(r.ids, r.datas, strict=True))
    assert statuses
    assert all(status == 200 for status in statuses)


def wait_for_metric(stack: Stack, name: str, value: float) -> bool:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for line in httpx.get(f"{stack.url}/metrics").text.splitlines():
            if line.startswith(name + " ") and float(line.split()[-1]) == value:
                return True
        time.sleep(0.05)
    return False


def test_a_slow_client_is_cut_off_with_a_reason_and_resumes_by_cursor(
    redis_server: RedisServer,
) -> None:
    small = PushSettings(heartbeat_s=0.5, block_ms=200, client_queue=5, window=1000)
    with running_stack(redis_server, push=small) as stack:
        first = [stack.writer.publish(e) for e in events(2)]

        def burst() -> list[str]:
            # 20 events in one transaction: the fan-out reads them in one go, more than the
            # client's queue of 5 takes.
            pipe = stack.writer.client.pipeline(transaction=True)
            for event in events(20, start=2):
                pipe.xadd(stack.keys.events, {STREAM_FIELD: encode(event)})
            return [i.decode() for i in pipe.execute()]

        async def main() -> tuple[Record, Record, Record, list[str]]:
            client = await sse(stack.server.port, {"cursor": first[0]})
            slow = client.record
            ws = Record()
            ws_task = asyncio.create_task(run_ws(stack.server.port, {"cursor": first[0]}, ws))
            await until(lambda: len(slow.ids) == 1 and len(ws.ids) == 1, "first event")
            ids = burst()
            await slow.ended.wait()
            await ws.ended.wait()
            await ws_task
            again = await sse(stack.server.port, {}, last_event_id=slow.ids[-1])
            await until(lambda: len(again.record.ids) == 20, "the rest after resuming")
            return slow, ws, again.record, ids

        slow, ws, resumed, ids = run(main())
    assert slow.ids == [first[1]]
    assert [e["error"]["code"] for e in slow.errors] == ["slow_consumer"]
    assert [e["error"]["code"] for e in ws.errors] == ["slow_consumer"]
    assert (ws.close_code, ws.close_reason) == (1013, "slow_consumer")
    assert resumed.ids == ids  # exactly the rest: no gap, no duplicate


def test_a_cursor_older_than_the_window_catches_up_from_redis_then_goes_live(
    redis_server: RedisServer,
) -> None:
    tiny = PushSettings(heartbeat_s=0.5, block_ms=200, batch=7, window=10)
    with running_stack(redis_server, push=tiny) as stack:

        async def main() -> list[Record]:
            # The fan-out starts with the first client: its window then fills with later ones.
            warm = await sse(stack.server.port, {})
            await until(lambda: warm.record.status == 200, "connected")
            await asyncio.sleep(0.3)
            for event in events(50):
                stack.writer.publish(event)
            await until(lambda: len(warm.record.ids) == 50, "live client")
            clients = [await sse(stack.server.port, {"cursor": "0-0"}) for _ in range(5)]
            await asyncio.sleep(0.1)
            for event in events(10, start=50):
                stack.writer.publish(event)
            records = [c.record for c in clients]
            await until(lambda: all(len(r.ids) >= 60 for r in records), "caught up")
            await asyncio.sleep(0.2)
            return records

        records = run(main())
        all_ids = [entry_id for entry_id, _ in stack.writer.stream()]
    assert len(all_ids) == 60
    assert all(record.ids == all_ids for record in records)


def test_invalid_events_in_redis_never_reach_a_client(stack: Stack) -> None:
    valid = events(3)
    broken_final = bar("EURUSD", Timeframe.M1, T0 + 99 * MINUTE_MS)
    raw_bad = [
        b"not json",
        encode(valid[0])[:-1] + b',"extra":1}',  # unknown field
        encode(broken_final).replace(b'"event_ts":', b'"event_ts":1', 1),  # event_ts != close
        encode(valid[0]).replace(b'"EURUSD"', b'"eurusd"'),  # not a symbol
    ]

    async def main() -> tuple[Record, Record]:
        client = await sse(stack.server.port, {"cursor": "0-0"})
        ws = Record()
        task = asyncio.create_task(run_ws(stack.server.port, {"cursor": "0-0"}, ws))
        for event, bad in zip(valid, raw_bad, strict=False):
            stack.writer.client.xadd(stack.keys.events, {STREAM_FIELD: bad})
            stack.writer.publish(event)
        stack.writer.client.xadd(stack.keys.events, {STREAM_FIELD: raw_bad[-1]})
        last = stack.writer.publish(bar("GBPUSD", Timeframe.M1, T0))
        await until(lambda: client.record.ids[-1:] == [last], "SSE")
        await until(lambda: ws.ids[-1:] == [last], "WS")
        task.cancel()
        return client.record, ws

    over_sse, over_ws = run(main())
    served = {entry_id: data for entry_id, data in stack.writer.stream()}
    assert len(over_sse.ids) == 4
    assert over_sse.ids == over_ws.ids
    assert all(json.loads(served[i])["symbol"] in SYMBOLS for i in over_sse.ids)
    assert over_sse.datas == [served[i] for i in over_sse.ids]
    assert not any(b"extra" in d or b"not json" in d for d in over_sse.datas + over_ws.datas)
    metrics = httpx.get(f"{stack.url}/metrics").text
    # Counted per read: a client catching up from Redis may read one the fan-out read too.
    (line,) = [x for x in metrics.splitlines() if x.startswith("fxconnector_push_invalid_events_")]
    assert float(line.split()[-1]) >= 4
    codes = {entry.code for entry in stack.deps.rejects.samples}
    assert codes == {"redis.invalid_event"}


def test_a_republished_final_is_not_sent_twice_but_a_revision_is(stack: Stack) -> None:
    final = bar("EURUSD", Timeframe.M1, T0)

    async def main() -> Record:
        client = await sse(stack.server.port, {})
        await until(lambda: client.record.status == 200, "connected")
        await asyncio.sleep(0.3)
        stack.writer.publish(final)
        stack.writer.publish(final)  # e.g. the writer's rebuild after a Redis outage
        last = stack.writer.publish(bar("EURUSD", Timeframe.M1, T0, rev=1))
        await until(lambda: client.record.ids[-1:] == [last], "the revision")
        return client.record

    record = run(main())
    assert [json.loads(d)["rev"] for d in record.datas] == [0, 1]


def test_a_malformed_snapshot_is_served_from_the_store_not_a_500(stack: Stack) -> None:
    finals = [bar("EURUSD", Timeframe.M1, T0 + i * MINUTE_MS) for i in range(5)]
    stack.connector.finals[("EURUSD", Timeframe.M1)] = finals
    key = stack.keys.snapshot("EURUSD", Timeframe.M1)
    with httpx.Client(base_url=stack.url, timeout=WAIT_S) as http:
        for bad in (b"[{", b'[{"symbol":"EURUSD"}]', encode([finals[1], finals[0]])):
            stack.writer.client.hset(key, mapping={"bars": bad, "cursor": "1-0"})
            response = http.get("/api/bars", params={"symbol": "EURUSD", "tf": "1m"})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["cursor"] is None
            assert [b["open_ms"] for b in body["bars"]] == [b.open_ms for b in finals]
    assert {e.code for e in stack.deps.rejects.samples} == {"redis.invalid_snapshot"}


# --- Host and Origin --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:{port}", 200),
        ("localhost:{port}", 200),
        ("[::1]:{port}", 200),
        ("app.localhost", 200),
        ("evil.example:{port}", 400),
        ("10.1.2.3", 400),
        ("127.0.0.1.evil.example", 400),
    ],
)
def test_the_server_answers_only_to_its_own_host_names(
    stack: Stack, host: str, status: int
) -> None:
    headers = {"host": host.format(port=stack.server.port)}
    response = httpx.get(f"{stack.url}/api/symbols", headers=headers)
    assert response.status_code == status
    if status == 400:
        assert response.json()["error"]["code"] == "host_not_allowed"


def test_the_websocket_refuses_a_foreign_origin(stack: Stack) -> None:
    port = stack.server.port

    async def attempt(origin: str) -> Record:
        record = Record()
        try:
            await asyncio.wait_for(run_ws(port, {}, record, origin=origin), 0.5)
        except TimeoutError:
            pass  # connected and streaming
        except Exception as exc:  # the handshake was refused
            record.errors.append({"refused": str(exc)})
        return record

    async def main() -> dict[str, Record]:
        origins = [f"http://127.0.0.1:{port}", "http://localhost", "http://evil.example", "null"]
        return {origin: await attempt(origin) for origin in origins}

    got = run(main())
    assert got[f"http://127.0.0.1:{port}"].status == 101
    assert got["http://localhost"].status == 0  # another host name than the request's Host
    assert got["http://evil.example"].status == 0
    assert "403" in got["http://evil.example"].errors[0]["refused"]
    assert got["null"].status == 0


# --- the cluster layout ----------------------------------------------------------------------


def test_the_cluster_layout_merges_the_per_symbol_streams(redis_server: RedisServer) -> None:
    keys = SurfaceKeys("fxtest", cluster=True)
    with running_stack(redis_server, push=PUSH, keys=keys) as stack:
        for event in events(10):
            stack.writer.publish(event)
        gbp_cursor = stack.writer.stream(symbol="GBPUSD")[1][0]

        async def main() -> tuple[Record, Record, Record, Record]:
            both = await sse(stack.server.port, {"cursor": "0-0"})
            one = await sse(stack.server.port, {"symbols": "GBPUSD", "cursor": gbp_cursor})
            ws = Record()
            spawn(run_ws(stack.server.port, {"cursor": "0-0"}, ws))
            await until(lambda: len(both.record.ids) == 10 and len(ws.ids) == 10, "backlog")
            for event in events(10, start=10):
                stack.writer.publish(event)
            await until(lambda: len(both.record.ids) == 20 and len(ws.ids) == 20, "live")
            resumed = await sse(stack.server.port, {}, last_event_id=both.record.ids[12])
            await until(lambda: len(resumed.record.ids) == 7, "resumed")
            await asyncio.sleep(0.2)  # and nothing more
            return both.record, one.record, ws, resumed.record

        both, one, ws, resumed = run(main())
        streams = {symbol: stack.writer.stream(symbol=symbol) for symbol in SYMBOLS}

    def by_symbol(datas: list[bytes]) -> dict[str, list[bytes]]:
        return {s: [d for d in datas if json.loads(d)["symbol"] == s] for s in SYMBOLS}

    # One symbol: that stream's own ids, after the cursor /api/bars would give.
    assert one.ids == [entry_id for entry_id, _ in streams["GBPUSD"][2:]]
    # Several: every entry of every stream once, each stream in order, composite cursors.
    want = {symbol: [data for _, data in entries] for symbol, entries in streams.items()}
    assert by_symbol(both.datas) == want
    assert by_symbol(ws.datas) == want
    assert all(entry_id.startswith("EURUSD:") and ",GBPUSD:" in entry_id for entry_id in both.ids)
    # Last-Event-ID resumes each stream exactly after its own position.
    resume_at = dict(part.split(":") for part in both.ids[12].split(","))
    expected = {
        symbol: [
            data
            for entry_id, data in entries
            if parse_stream_id(entry_id) > parse_stream_id(resume_at[symbol])
        ]
        for symbol, entries in streams.items()
    }
    assert by_symbol(resumed.datas) == expected
    assert sum(map(len, expected.values())) == 7


FLOOD = 25_000  # events of ~370 bytes as SSE: 9 MB


def test_a_client_that_reads_nothing_is_cut_off_and_the_others_go_on(
    redis_server: RedisServer,
) -> None:
    queue = PushSettings(heartbeat_s=0.5, block_ms=200, client_queue=600, window=1000)
    with running_stack(redis_server, push=queue) as stack:

        def flood(start: int) -> None:
            pipe = stack.writer.client.pipeline(transaction=True)
            for event in events(500, start=start):
                pipe.xadd(stack.keys.events, {STREAM_FIELD: encode(event)})
            pipe.execute()

        async def main() -> tuple[Record, Record]:
            stuck = await sse(stack.server.port, {}, rcvbuf=4096)
            healthy = await sse(stack.server.port, {})
            await until(lambda: stuck.record.status == healthy.record.status == 200, "up")
            await asyncio.sleep(0.3)
            assert stuck.transport is not None
            stuck.transport.pause_reading()  # reads nothing more: the server's writes block
            # More than the kernel buffers (tcp_wmem's default cap is 4 MB) and the transport's.
            for i in range(FLOOD // 500):
                flood(i * 500)
                await asyncio.sleep(0.02)
            await until(partial(has_at_least, healthy.record, FLOOD), "the healthy one")
            stuck.transport.resume_reading()
            await asyncio.wait_for(stuck.record.ended.wait(), WAIT_S)  # the server cut it off
            return stuck.record, healthy.record

        stuck, healthy = run(main())
        metrics = httpx.get(f"{stack.url}/metrics").text
    assert len(healthy.ids) == FLOOD  # the others got everything
    assert len(stuck.ids) < FLOOD
    assert "fxconnector_push_slow_clients_total 1.0" in metrics


def test_clients_of_a_reader_started_while_redis_is_down_are_told_and_then_served(
    stack: Stack,
) -> None:
    stack.redis_server.kill()

    async def main() -> Record:
        client = await sse(stack.server.port, {})
        await until(lambda: len(client.record.errors) >= 1, "told")
        stack.redis_server.restart()
        await asyncio.sleep(1.0)  # the reader's backoff (at most 0.5 s here) and its start
        last = ""
        for i in range(50):  # until the client is live (it joined after its start position)
            last = stack.writer.publish(bar("EURUSD", Timeframe.M1, T0 + i * MINUTE_MS))
            if client.record.ids:
                break
            await asyncio.sleep(0.1)
        await until(lambda: client.record.ids[-1:] == [last], "served")
        return client.record

    record = run(main())
    assert {e["error"]["code"] for e in record.errors} == {"unavailable"}
    assert len(record.ids) == len(set(record.ids))


def redis_ms(stack: Stack) -> int:
    seconds, micros = stack.writer.client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_a_cursor_ahead_of_the_reader_gets_nothing_it_already_has(stack: Stack) -> None:
    """A client may hold a newer cursor (from /api/bars' snapshot) than the reader has read;
    what the reader then reads up to that cursor must not reach it again."""

    async def main() -> tuple[Record, Record, list[str], str]:
        witness = await sse(stack.server.port, {})
        await until(lambda: witness.record.status == 200, "witness")
        await asyncio.sleep(0.3)  # the reader runs
        first = stack.writer.publish(events(1)[0])
        # A cursor 4 s past the newest entry: entries written meanwhile (the SSE connect, on a
        # loaded machine too) lie below it.
        cursor = f"{int(first.split('-')[0]) + 4000}-0"
        ahead = await sse(stack.server.port, {"cursor": cursor})
        await until(lambda: ahead.record.status == 200, "ahead")
        await asyncio.sleep(0.2)  # it has joined
        below = [stack.writer.publish(e) for e in events(2, start=1)]
        cursor_ms = int(cursor.split("-")[0])
        assert all(int(entry.split("-")[0]) < cursor_ms for entry in below), (below, cursor)
        await until(lambda: redis_ms(stack) > cursor_ms, "Redis' clock passes the cursor")
        above = stack.writer.publish(events(1, start=3)[0])
        await until(partial(has_at_least, witness.record, 4), "witness got all")
        await until(lambda: ahead.record.ids[-1:] == [above], "ahead got the later one")
        return witness.record, ahead.record, [first, *below, above], cursor

    witness, ahead, ids, cursor = run(main())
    assert witness.ids == ids
    assert all(parse_stream_id(i) < parse_stream_id(cursor) for i in ids[:3])
    assert ahead.ids == ids[3:]  # nothing at or below its cursor
