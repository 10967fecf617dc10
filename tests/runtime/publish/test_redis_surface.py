"""The Redis surface writer against a real redis-server: keyspace, bounds, snapshot/stream
consistency under concurrent publishing, coalescing, NoMix, outages, and the connect rules.

Every wait is bounded (asyncio.wait_for); every client is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
import redis.asyncio

from fxconnector.config.secrets import Secret, Secrets
from fxconnector.core.errors import ConfigError
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.status import SurfaceState
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.clock import Clock, ManualClock, SystemClock
from fxconnector.runtime.publish.keys import (
    SNAPSHOT_BARS_FIELD,
    SNAPSHOT_CURSOR_FIELD,
    STREAM_FIELD,
    SurfaceKeys,
)
from fxconnector.runtime.publish.redis_connect import SurfaceClient, connect_redis
from fxconnector.runtime.publish.redis_surface import RedisSurface
from fxconnector.runtime.publish.status_writer import StatusPayloads
from fxconnector.runtime.store.cache_tail import TailCache
from fxconnector.runtime.store.port import AppendOutcome
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.redis_server import RedisServer
from tests.runtime.store.test_store_suite import make_bar

pytestmark = pytest.mark.redis

NS: Final = "fxtest"
KEYS: Final = SurfaceKeys(NS)
WAIT_S: Final = 15.0
_EVENTS: Final = msgspec.json.Decoder(OhlcvEvent)
_BARS: Final = msgspec.json.Decoder(list[OhlcvEvent])
_FIELD: Final = STREAM_FIELD.encode()


def preview(
    i: int, *, symbol: str = "EURUSD", tf: Timeframe = Timeframe.M1, step: int = 0
) -> OhlcvEvent:
    """A preview of the i-th bucket; `step` moves its close, as later ticks would."""
    bar = make_bar(i, symbol=symbol, tf=tf)
    return msgspec.structs.replace(
        bar,
        complete=False,
        source=Source.STREAM,
        event_ts=bar.open_ms + 1 + step % (tf.ms - 2),
        high=round(bar.high + step * 1e-5, 5),
        close=round(bar.high + step * 1e-5, 5),
        tick_count=step,
        volume=step,
    )


def tick(symbol: str, ts_ms: int, bid: float) -> Tick:
    return Tick(symbol=symbol, bid=bid, ask=round(bid + 0.0001, 5), ts_ms=ts_ms)


async def wait_until(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Poll `predicate` (state owned by another task) until true, bounded by `timeout_s`."""

    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - the surface exposes state, not events
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout_s)


@contextlib.asynccontextmanager
async def running(
    url: str,
    tail: TailCache | None = None,
    *,
    events_retention_s: int = 600,
    snapshot_bars: int = 50,
    preview_interval_ms: int = 20,
    on_redis_error: Callable[[], None] | None = None,
    on_published: Callable[[OhlcvEvent, float], None] | None = None,
    secrets: Secrets | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[tuple[RedisSurface, redis.asyncio.Redis]]:
    """A surface publishing to `url` with its run() task, stopped and closed afterwards."""
    client = connect_redis(url, secrets or Secrets())
    async with running_surface(
        client,
        KEYS,
        tail if tail is not None else TailCache(max(snapshot_bars, 100)),
        events_retention_s=events_retention_s,
        snapshot_bars=snapshot_bars,
        preview_interval_ms=preview_interval_ms,
        clock=clock or SystemClock(),
        on_published=on_published,
        on_redis_error=on_redis_error,
    ) as surface:
        yield surface, client


@contextlib.asynccontextmanager
async def running_surface(
    client: SurfaceClient, keys: SurfaceKeys, tail: TailCache, **options: Any
) -> AsyncIterator[RedisSurface]:
    """A RedisSurface on `client` with its run() task; stopped, and the client closed, after."""
    surface = RedisSurface(client, keys, tail, **options)
    task = asyncio.create_task(surface.run())
    try:
        yield surface
    finally:
        await asyncio.wait_for(surface.stop(), WAIT_S)
        await asyncio.wait_for(task, WAIT_S)
        await client.aclose()


async def settled(surface: RedisSurface) -> None:
    """Wait until the surface is OK and everything queued (finals, previews, ticks) is out."""
    await wait_until(lambda: surface.state is SurfaceState.OK)
    await asyncio.wait_for(surface.drain(), WAIT_S)
    assert not surface.pending


async def stream_events(
    client: redis.asyncio.Redis, after: bytes | None = None
) -> list[tuple[bytes, OhlcvEvent]]:
    low = b"-" if after is None else b"(" + after
    return [
        (entry_id, _EVENTS.decode(data))
        for entry_id, data in entries(await client.xrange(KEYS.events, min=low))
    ]


def entries(found: object) -> list[tuple[bytes, bytes]]:
    """(id, `event` field) of XRANGE entries, checking each has that one field only."""
    assert isinstance(found, list)
    out = []
    for entry_id, fields in found:
        assert isinstance(entry_id, bytes)
        assert isinstance(fields, dict)
        assert set(fields) == {_FIELD}
        out.append((entry_id, fields[_FIELD]))
    return out


async def read_snapshot(
    client: redis.asyncio.Redis, symbol: str, tf: Timeframe
) -> tuple[list[OhlcvEvent], bytes] | None:
    found = await client.hgetall(KEYS.snapshot(symbol, tf))
    if not found:
        return None
    assert set(found) == {SNAPSHOT_BARS_FIELD.encode(), SNAPSHOT_CURSOR_FIELD.encode()}
    bars, cursor = found[SNAPSHOT_BARS_FIELD.encode()], found[SNAPSHOT_CURSOR_FIELD.encode()]
    assert isinstance(bars, bytes)
    assert isinstance(cursor, bytes)
    return _BARS.decode(bars), cursor


def merge(snapshot: list[OhlcvEvent], later: list[OhlcvEvent]) -> dict[int, OhlcvEvent]:
    """What a consumer holds: the snapshot, then later finals as upserts (a newer rev wins)."""
    held = {bar.open_ms: bar for bar in snapshot}
    for event in later:
        if event.complete and event.rev >= held.get(event.open_ms, event).rev:
            held[event.open_ms] = event
    return held


def assert_nomix(events: list[OhlcvEvent]) -> None:
    """No preview follows a final of its series at the same or a later open_ms."""
    newest_final: dict[tuple[str, Timeframe], int] = {}
    for event in events:
        series = (event.symbol, event.tf)
        if event.complete:
            newest_final[series] = max(newest_final.get(series, -1), event.open_ms)
        else:
            assert event.open_ms > newest_final.get(series, -1), event


# -- keyspace and bounds ---------------------------------------------------------------------


def test_the_keyspace_is_exactly_the_documented_keys(redis_server: RedisServer) -> None:
    symbols, tfs = ("EURUSD", "GBPUSD"), (Timeframe.M1, Timeframe.M5)

    async def scenario() -> set[bytes]:
        async with running(redis_server.unix_url) as (surface, client):
            for symbol in symbols:
                for tf in tfs:
                    surface.finals([make_bar(i, symbol=symbol, tf=tf) for i in range(3)])
                    surface.previews([preview(3, symbol=symbol, tf=tf, step=5)])
                surface.tick(tick(symbol, make_bar(3).open_ms + 5, 1.2))
            await surface.write_status(
                StatusPayloads("host:1", b'{"ts":1}', {"EURUSD": b'{"ts":2}'}), ttl_s=30
            )
            await surface.write_status_snapshot(b'{"errors":[],"last_command":null}')
            await settled(surface)
            assert surface.published_previews == 4
            assert 0 < await client.ttl(KEYS.status) <= 30
            ticks = await client.hgetall(KEYS.price_tik)
            assert set(ticks) == {s.encode() for s in symbols}
            assert msgspec.json.decode(ticks[b"GBPUSD"], type=Tick).bid == 1.2
            events = [event for _, event in await stream_events(client)]
            assert len(events) == 4 * 3 + 4
            assert_nomix(events)
            for symbol in symbols:
                for tf in tfs:
                    snapshot = await read_snapshot(client, symbol, tf)
                    assert snapshot is not None
                    assert snapshot[0] == [make_bar(i, symbol=symbol, tf=tf) for i in range(3)]
            return {key async for key in client.scan_iter(match=f"{NS}:*")}

    keys = asyncio.run(scenario())
    expected = {key.encode() for key in KEYS.all_fixed()} | {
        KEYS.snapshot(symbol, tf).encode() for symbol in symbols for tf in tfs
    }
    expected |= {KEYS.status_process("host:1").encode(), KEYS.status_symbol("EURUSD").encode()}
    assert keys == expected
    assert not [key for key in keys if b"command" in key]


def test_the_stream_keeps_its_retention_by_time_not_a_count(redis_server: RedisServer) -> None:
    """Entries older than the retention are trimmed (MINID ~), every newer one is kept however
    many there are, and a clock far ahead of Redis's never trims the newest entry."""
    retention_s, old, fresh = 60, 1_000, 5_000

    async def scenario() -> None:
        async with redis.asyncio.Redis.from_url(redis_server.url) as setup:
            seconds, micros = await setup.time()
            redis_now_ms = seconds * 1000 + micros // 1000
            for i in range(old):  # written long ago (ids are times): past the retention
                await setup.xadd(
                    KEYS.events,
                    {STREAM_FIELD: b"{}"},
                    id=f"{redis_now_ms - 2 * retention_s * 1000}-{i + 1}",
                )
        clock = ManualClock(redis_now_ms)
        async with running(redis_server.url, events_retention_s=retention_s, clock=clock) as (
            surface,
            client,
        ):
            for start in range(0, fresh, 250):
                surface.finals([make_bar(i) for i in range(start, start + 250)])
                await asyncio.sleep(0)
            await settled(surface)
            assert surface.published_finals == fresh
            ids = [parse_id(entry_id) for entry_id, _ in entries(await client.xrange(KEYS.events))]
            kept_old = [i for i in ids if i[0] < redis_now_ms - retention_s * 1000]
            assert len(ids) - len(kept_old) >= fresh  # no count bound on what is recent
            assert len(kept_old) < 100  # approximate: at most one stream node of old entries
            # The connector's clock far ahead of Redis's: the newest entry and the snapshot's
            # cursor survive the trim.
            clock.advance(10 * retention_s * 1000)
            surface.finals([make_bar(fresh)])
            await settled(surface)
            cursor = await client.hget(KEYS.snapshot("EURUSD", Timeframe.M1), SNAPSHOT_CURSOR_FIELD)
            assert cursor is not None
            assert len(entries(await client.xrange(KEYS.events, min=cursor, max=cursor))) == 1

    asyncio.run(scenario())


def parse_id(entry_id: bytes) -> tuple[int, int]:
    ms, seq = entry_id.split(b"-")
    return int(ms), int(seq)


# -- consistency ---------------------------------------------------------------------------


def test_snapshot_then_stream_from_its_cursor_gives_every_final_once(
    redis_server: RedisServer,
) -> None:
    symbols, total, window = ("EURUSD", "GBPUSD"), 400, 50

    async def check(client: redis.asyncio.Redis, symbol: str) -> int:
        snapshot = await read_snapshot(client, symbol, Timeframe.M1)
        if snapshot is None:
            return 0
        bars, cursor = snapshot
        later = [
            e
            for _, e in await stream_events(client, after=cursor)
            if e.symbol == symbol and e.tf is Timeframe.M1 and e.complete
        ]
        [(_, at_cursor)] = entries(await client.xrange(KEYS.events, min=cursor, max=cursor))
        assert _EVENTS.decode(at_cursor) == bars[-1]
        opens = [bar.open_ms for bar in bars] + [event.open_ms for event in later]
        step = Timeframe.M1.ms
        assert opens == list(range(opens[0], opens[-1] + step, step))  # no gap, no duplicate
        newest_in_snapshot = (bars[-1].open_ms - make_bar(0).open_ms) // step
        assert len(bars) == min(window, newest_in_snapshot + 1)
        assert [b for b in bars if b.symbol != symbol] == []
        return len(opens)

    async def scenario() -> None:
        async with running(redis_server.url, snapshot_bars=window) as (surface, client):
            done = asyncio.Event()
            checks = 0

            async def produce() -> None:
                for i in range(total):
                    for symbol in symbols:
                        surface.finals([make_bar(i, symbol=symbol)])
                        surface.previews([preview(i + 1, symbol=symbol, step=i)])
                    if i % 5 == 0:
                        await asyncio.sleep(0.002)
                done.set()

            async def consume() -> None:
                nonlocal checks
                while not done.is_set():
                    for symbol in symbols:
                        await check(client, symbol)
                        checks += 1

            await asyncio.wait_for(asyncio.gather(produce(), consume()), WAIT_S)
            await settled(surface)
            assert checks > 20
            for symbol in symbols:
                snapshot = await read_snapshot(client, symbol, Timeframe.M1)
                assert snapshot is not None
                assert snapshot[0] == [
                    make_bar(i, symbol=symbol) for i in range(total - window, total)
                ]
                assert await check(client, symbol) == window
            assert_nomix([event for _, event in await stream_events(client)])
            assert surface.published_finals == total * len(symbols)

    asyncio.run(scenario())


# -- coalescing and NoMix ------------------------------------------------------------------


def test_previews_and_ticks_are_coalesced_to_the_latest(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        async with running(redis_server.url, preview_interval_ms=200) as (surface, client):
            await wait_until(lambda: surface.state is SurfaceState.OK)
            for step in range(1000):  # one burst, well inside one interval
                surface.previews([preview(7, step=step)])
                surface.tick(tick("EURUSD", make_bar(7).open_ms + step, 1.1 + step * 1e-5))
            await wait_until(lambda: surface.published_previews >= 1)
            await asyncio.sleep(0.5)  # two more intervals: nothing else may be published
            events = [event for _, event in await stream_events(client)]
            assert 1 <= len(events) <= 2
            assert events[-1] == preview(7, step=999)
            last_tick = await client.hget(KEYS.price_tik, "EURUSD")
            assert last_tick is not None
            assert msgspec.json.decode(last_tick, type=Tick).ts_ms == make_bar(7).open_ms + 999

    asyncio.run(scenario())


def test_nomix_a_preview_never_follows_a_final_of_its_key_or_a_later_one(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        async with running(redis_server.url, preview_interval_ms=50) as (surface, client):
            await wait_until(lambda: surface.state is SurfaceState.OK)
            # Queued in one go, before any cycle can run:
            surface.previews([preview(5, symbol="EURUSD")])  # then its own final
            surface.finals([make_bar(5, symbol="EURUSD")])
            surface.previews([preview(4, symbol="GBPUSD")])  # then a later final
            surface.finals([make_bar(5, symbol="GBPUSD")])
            surface.finals([make_bar(4, symbol="USDJPY")])  # control: a later bucket's preview
            surface.previews([preview(5, symbol="USDJPY")])
            surface.previews([preview(5, symbol="EURUSD", step=3)])  # after the final: dropped
            await settled(surface)
            events = [event for _, event in await stream_events(client)]
            assert_nomix(events)
            previews = [event for event in events if not event.complete]
            assert previews == [preview(5, symbol="USDJPY")]
            assert surface.nomix_dropped == 3
            assert [event.symbol for event in events] == ["EURUSD", "GBPUSD", "USDJPY", "USDJPY"]

    asyncio.run(scenario())


# -- outages ------------------------------------------------------------------------------


def test_a_redis_outage_degrades_and_recovery_loses_no_final(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    symbols = ("EURUSD", "GBPUSD")
    store = JsonlStore(tmp_path / "ssot")
    store.open()
    for symbol in symbols:
        store.append([make_bar(i, symbol=symbol) for i in range(20)])
    store.flush()
    tail = TailCache(200)
    tail.rebuild(store)
    errors: list[int] = []
    handed: list[OhlcvEvent] = []
    published: list[OhlcvEvent] = []
    next_bar = 20

    def publish_next(surface: RedisSurface, revise: int | None = None) -> None:
        """Store the next final of each symbol durably, then hand it to the surface."""
        nonlocal next_bar
        bars = [make_bar(next_bar, symbol=s) for s in symbols]
        if revise is not None:
            bars += [make_bar(revise, symbol=s, shift=0.0002) for s in symbols]
        results = store.append(bars, reason="repair")
        store.flush()
        assert AppendOutcome.DUPLICATE not in {r.outcome for r in results}
        events = [r.stored.event() for r in results]
        surface.finals(events)
        handed.extend(events)
        next_bar += 1

    async def scenario() -> None:
        async with running(
            redis_server.url,
            tail,
            snapshot_bars=100,
            on_redis_error=lambda: errors.append(1),
            on_published=lambda event, _latency: published.append(event),
        ) as (surface, client):
            await settled(surface)
            before_outage = {s: await read_snapshot(client, s, Timeframe.M1) for s in symbols}
            for symbol, snapshot in before_outage.items():  # rebuilt from the SSOT at start
                assert snapshot is not None
                assert snapshot[0] == [make_bar(i, symbol=symbol) for i in range(20)]
            publish_next(surface)
            await settled(surface)

            redis_server.kill()
            publish_next(surface)
            await wait_until(lambda: surface.state is SurfaceState.DEGRADED)
            for _ in range(5):
                publish_next(surface, revise=3 if next_bar == 23 else None)
                await asyncio.sleep(0.05)
            assert surface.backlog >= 12
            redis_server.start()
            for _ in range(3):
                publish_next(surface)
            await settled(surface)
            assert surface.backlog == 0
            assert errors
            # One errors[] entry for the outage, however many retries it took.
            assert [e.code for e in surface.errors] == ["redis.unavailable"]
            assert len(errors) > 1
            assert surface.errors[0].message.startswith("redis ")

            for symbol in symbols:
                stored = list(store.bars(symbol, Timeframe.M1))
                expected = {bar.open_ms: bar.event() for bar in stored}
                assert len(expected) == next_bar
                assert max(bar.rev for bar in stored) == 1
                # A consumer that reloads the snapshot after the outage:
                fresh = await read_snapshot(client, symbol, Timeframe.M1)
                assert fresh is not None
                assert merge(fresh[0], []) == expected
                # A consumer that kept its pre-outage snapshot and cursor:
                old = before_outage[symbol]
                assert old is not None
                later = [e for _, e in await stream_events(client, after=old[1])]
                assert merge(old[0], [e for e in later if e.symbol == symbol]) == expected
            assert_nomix([event for _, event in await stream_events(client)])
            redis_server.kill()  # a second outage after the recovery is a new entry
            assert await surface.write_status(StatusPayloads("host:1", b"{}", {}), ttl_s=5) is False
            assert [e.code for e in surface.errors] == ["redis.unavailable"] * 2
            redis_server.start()

    asyncio.run(scenario())
    store.close()
    # Every final handed over was reported published exactly once.
    assert sorted((e.key, e.rev) for e in published) == sorted((e.key, e.rev) for e in handed)


def test_a_restart_between_publishes_is_noticed_and_rebuilt(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        async with running(redis_server.url) as (surface, client):
            surface.finals([make_bar(i) for i in range(10)])
            await settled(surface)
            redis_server.restart()  # empty; nothing is published meanwhile

            async def rebuilt() -> None:
                key = KEYS.snapshot("EURUSD", Timeframe.M1)
                while await _quiet_hlen(client, key) == 0:  # noqa: ASYNC110 - polling Redis
                    await asyncio.sleep(0.02)

            await asyncio.wait_for(rebuilt(), WAIT_S)
            await wait_until(lambda: surface.state is SurfaceState.OK)
            snapshot = await read_snapshot(client, "EURUSD", Timeframe.M1)
            assert snapshot is not None
            assert snapshot[0] == [make_bar(i) for i in range(10)]

    asyncio.run(scenario())


async def _quiet_hlen(client: redis.asyncio.Redis, key: str) -> int:
    """HLEN, or 0 while the test's own connection still sees the restart."""
    try:
        return int(await client.hlen(key))
    except redis.RedisError:
        return 0


def test_an_unreachable_redis_degrades_counts_and_never_raises(tmp_path: Path) -> None:
    errors: list[int] = []

    async def scenario() -> None:
        url = f"unix://{tmp_path / 'nobody.sock'}"
        async with running(url, on_redis_error=lambda: errors.append(1)) as (surface, _client):
            surface.finals([make_bar(0)])
            await wait_until(lambda: len(errors) >= 2)
            assert surface.state is SurfaceState.DEGRADED
            assert surface.backlog == 1
            counted = len(errors)
            assert await surface.write_status(StatusPayloads("host:1", b"{}", {}), ttl_s=5) is False
            assert await surface.write_status_snapshot(b"{}") is False
            assert len(errors) >= counted + 2
            assert surface.last_error is not None
            assert "nobody.sock" in surface.last_error

    asyncio.run(scenario())


def test_a_bug_is_not_mistaken_for_a_redis_error(redis_server: RedisServer) -> None:
    def broken_hook(_event: OhlcvEvent, _latency_s: float) -> None:
        raise TypeError("a bug in a metrics hook")

    async def scenario() -> None:
        client = connect_redis(redis_server.url, Secrets())
        surface = RedisSurface(
            client,
            KEYS,
            TailCache(10),
            events_retention_s=600,
            snapshot_bars=10,
            preview_interval_ms=20,
            clock=SystemClock(),
            on_published=broken_hook,
        )
        surface.finals([make_bar(0)])
        try:
            with pytest.raises(TypeError, match="metrics hook"):
                await asyncio.wait_for(surface.run(), WAIT_S)
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_publish_latency_is_reported_per_final(redis_server: RedisServer) -> None:
    seen: list[tuple[OhlcvEvent, float]] = []

    async def scenario() -> None:
        async with running(redis_server.url, on_published=lambda e, s: seen.append((e, s))) as (
            surface,
            _client,
        ):
            surface.finals([make_bar(i) for i in range(5)])
            await settled(surface)

    asyncio.run(scenario())
    assert [event for event, _ in seen] == [make_bar(i) for i in range(5)]
    assert all(0 <= seconds < WAIT_S for _, seconds in seen)


# -- connecting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:pw@127.0.0.1:6379/0",
        "redis://:pw@127.0.0.1:6379/0",
        "redis://user@127.0.0.1:6379/0",
        "redis://127.0.0.1:6379/0?password=pw",
        "unix:///tmp/r.sock?username=u",
    ],
)
def test_credentials_in_the_url_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ConfigError, match="secrets file") as caught:
        connect_redis(url, Secrets())
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "unix://"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"surface\.redis_url"):
        connect_redis(url, Secrets())


def test_tls_options_in_the_query_pass_through() -> None:
    async def scenario() -> None:
        client = connect_redis(
            "rediss://redis.example:6380/2?ssl_cert_reqs=none&ssl_check_hostname=false",
            Secrets(redis_password=Secret("pw-123")),
        )
        try:
            kwargs = client.connection_pool.connection_kwargs
            assert kwargs["ssl_cert_reqs"] == "none"
            assert kwargs["ssl_check_hostname"] is False
            assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("redis.example", 6380, 2)
            assert kwargs["password"] == "pw-123"  # noqa: S105 - a test value
            assert "pw-123" not in repr(client)
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_acl_credentials_come_from_the_secrets(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with redis_server.client() as admin:
        admin.acl_setuser(
            "fx", enabled=True, passwords=["+s3cret-pw"], keys=[f"{NS}:*"], commands=["+@all"]
        )

    async def scenario() -> None:
        good = Secrets(redis_username=Secret("fx"), redis_password=Secret("s3cret-pw"))
        async with running(redis_server.url, secrets=good) as (surface, client):
            assert await surface.write_status(StatusPayloads("host:1", b"{}", {}), ttl_s=5)
            assert await client.acl_whoami() == "fx"
        bad = Secrets(redis_username=Secret("fx"), redis_password=Secret("wrong-pw-9"))
        async with running(redis_server.url, secrets=bad) as (surface, _client):
            assert await surface.write_status(StatusPayloads("host:1", b"{}", {}), ttl_s=5) is False
            await wait_until(lambda: surface.state is SurfaceState.DEGRADED)
            assert surface.last_error is not None
            assert "AuthenticationError" in surface.last_error
            assert "wrong-pw-9" not in surface.last_error
            assert [e.code for e in surface.errors] == ["redis.auth_failed"]
            assert "wrong-pw-9" not in surface.errors[0].message

    asyncio.run(scenario())
    logged = [str(getattr(record, "fields", "")) + record.getMessage() for record in caplog.records]
    assert any("surface.degraded" in line for line in logged)
    assert not [line for line in logged if "wrong-pw-9" in line]
