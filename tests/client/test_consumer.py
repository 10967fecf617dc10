"""SurfaceConsumer against a real redis-server, fed by a small producer of the documented layout.

The producer here writes what `runtime.publish.keys` documents (XADD field `event` with the
canonical JSON; the snapshot hash `bars`/`cursor` in the same MULTI as the events) with ids it
chooses, so tests can also play a producer whose clock is behind. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import pytest
from bench.cluster_launch import RedisClusterNodes
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.typing import EncodableT, FieldT

from fxconnector.client.backoff import Backoff
from fxconnector.client.consumer import SurfaceConsumer
from fxconnector.client.merge import Change, ChangeKind
from fxconnector.client.stream_replies import StreamId
from fxconnector.config.secrets import Secrets
from fxconnector.core.errors import ConfigError, ContractViolation, SurfaceUnavailable
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish.keys import (
    SNAPSHOT_BARS_FIELD,
    SNAPSHOT_CURSOR_FIELD,
    STREAM_FIELD,
    SurfaceKeys,
)
from fxconnector.runtime.publish.redis_connect import connect_cluster
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

T = TypeVar("T")
T0 = 1_549_238_400_000  # 2019-02-04 00:00 UTC
M1, M5 = Timeframe.M1, Timeframe.M5
KEYS = SurfaceKeys("fxtest")
SUBSCRIBED = [("EURUSD", M1), ("EURUSD", M5)]
FAST = Backoff(initial_s=0.02, cap_s=0.2)
WAIT_S = 20.0  # bound of every wait for a condition


def bar(
    symbol: str, tf: Timeframe, k: int, *, rev: int = 0, ticks: int | None = None
) -> OhlcvEvent:
    """Bar k of a series: a final (source by tf) or, with `ticks`, a preview of that many ticks."""
    open_ms = T0 + k * tf.ms
    base = round((1.3077 if symbol == "GBPUSD" else 1.1456) + (k % 17) * 0.00003, 5)
    is_final = ticks is None
    count = (90 + k % 40 + rev) if ticks is None else ticks
    return OhlcvEvent(
        symbol=symbol,
        tf=tf,
        open_ms=open_ms,
        close_ms=open_ms + tf.ms - 1,
        open=base,
        high=round(base + 0.00012 + rev * 0.00001, 5),
        low=round(base - 0.0001, 5),
        close=round(base + 0.00004, 5),
        volume=count,
        tick_count=count,
        complete=is_final,
        source=(Source.HISTORY if tf is M1 else Source.DERIVED) if is_final else Source.STREAM,
        event_ts=open_ms + tf.ms - 1 if is_final else open_ms + min(ticks or 0, 59) * 1000,
        rev=rev,
    )


class Producer:
    """Publishes batches the way the connector does; remembers every final (latest rev)."""

    def __init__(
        self,
        redis: Redis,
        *,
        first_ms: int = 1_700_000_000_000,
        maxlen: int = 10_000,
        keys: SurfaceKeys = KEYS,
    ):
        self.redis = redis
        self.keys = keys
        self.stream_last: dict[str, StreamId] = {}  # each stream's newest id
        self.maxlen = maxlen
        self.window = 10_000  # bars per snapshot: more than any test publishes
        self.finals: dict[tuple[str, Timeframe], dict[int, OhlcvEvent]] = {}
        self.last_id = StreamId(first_ms, 0)

    def _next_id(self) -> StreamId:
        self.last_id = StreamId(self.last_id.ms + 1, 0)
        return self.last_id

    async def publish(self, events: Iterable[OhlcvEvent]) -> StreamId:
        touched: set[tuple[str, Timeframe]] = set()
        async with self.redis.pipeline(transaction=True) as pipe:
            for event in events:
                stream = self.keys.events_for(event.symbol)
                self.stream_last[stream] = self._next_id()
                pipe.xadd(
                    stream,
                    {STREAM_FIELD: encode(event)},
                    id=str(self.last_id),
                    maxlen=self.maxlen,
                    approximate=False,  # the connector trims with `~`; exact keeps tests exact
                )
                if event.complete:
                    series = self.finals.setdefault((event.symbol, event.tf), {})
                    held = series.get(event.open_ms)
                    if held is None or event.rev > held.rev:
                        series[event.open_ms] = event
                    touched.add((event.symbol, event.tf))
            for symbol, tf in touched:
                pipe.hset(
                    self.keys.snapshot(symbol, tf),
                    mapping={
                        SNAPSHOT_BARS_FIELD: encode(self.expected(symbol, tf)[-self.window :]),
                        # the id of the symbol's own stream (the cluster layout has one each)
                        SNAPSHOT_CURSOR_FIELD: str(self.stream_last[self.keys.events_for(symbol)]),
                    },
                )
            await pipe.execute()
        return self.last_id

    async def add_raw(self, fields: dict[FieldT, EncodableT]) -> None:
        """One stream entry as given (for entries the contract does not allow)."""
        await self.redis.xadd(KEYS.events, fields, id=str(self._next_id()))

    async def republish(self) -> StreamId:
        """After a Redis restart: every remembered final again (snapshots are rewritten too)."""
        every = [bar for series in self.finals.values() for bar in series.values()]
        return await self.publish(sorted(every, key=lambda bar: (bar.open_ms, bar.tf.ms)))

    def expected(self, symbol: str, tf: Timeframe) -> list[OhlcvEvent]:
        series = self.finals.get((symbol, tf), {})
        return [series[open_ms] for open_ms in sorted(series)]


def minute_batch(k: int) -> list[OhlcvEvent]:
    """What the connector publishes around minute k: previews, the final of k, a 5m final."""
    events = [
        bar("EURUSD", M1, k, ticks=20),
        bar("GBPUSD", M1, k, ticks=15),
        bar("EURUSD", M1, k, ticks=55),
        bar("EURUSD", M1, k),
        bar("GBPUSD", M1, k),
        bar("EURUSD", M1, k + 1, ticks=3),
    ]
    if k % 5 == 4:
        events.append(bar("EURUSD", M5, k // 5))
    return events


async def wait_until(condition: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Wait, bounded, for a condition on state that another task (or the server) owns."""
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                result = condition()
                if result if isinstance(result, bool) else await result:
                    return
                # Polling is the point: the state belongs to the consumer's task or the server.
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"not within {WAIT_S} s: {what}")


async def drain(consumer: SurfaceConsumer, until: StreamId) -> None:
    """Poll (without blocking) until the consumer has read through `until`, the newest id."""
    async with asyncio.timeout(WAIT_S):
        while True:
            await consumer.poll(block_ms=0, count=7)
            if consumer.cursor == until:
                return


def assert_same_finals(consumer: SurfaceConsumer, producer: Producer) -> None:
    for symbol, tf in SUBSCRIBED:
        assert consumer.book.finals(symbol, tf) == producer.expected(symbol, tf), (symbol, tf)


def has_same_finals(consumer: SurfaceConsumer, producer: Producer) -> bool:
    return all(
        consumer.book.finals(symbol, tf) == producer.expected(symbol, tf)
        for symbol, tf in SUBSCRIBED
    )


def run_with_clients(
    server: RedisServer, body: Callable[..., Awaitable[T]], count: int = 2, **consumer: Any
) -> T:
    """asyncio.run(body(*clients)): `count` clients, the last one (the consumer's) built with
    `consumer` options, the others (producer, observer) with defaults; all closed afterwards."""

    async def main() -> T:
        clients = [Redis.from_url(server.url) for _ in range(count - 1)]
        clients.append(Redis.from_url(server.url, **consumer))
        try:
            return await body(*clients)
        finally:
            for each in clients:
                await each.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize(
    "client",
    [{}, {"decode_responses": True}, {"protocol": 3}, {"protocol": 3, "legacy_responses": False}],
    ids=["resp2", "decoded", "resp3", "resp3_unified"],
)
def test_bootstrap_and_poll_give_exactly_the_produced_finals(
    redis_server: RedisServer, client: dict[str, Any]
) -> None:
    async def body(producer_redis: Redis, consumer_redis: Redis) -> None:
        producer = Producer(producer_redis)
        for k in range(12):
            await producer.publish(minute_batch(k))
        changes: list[Change] = []
        reloads: list[tuple[str, Timeframe]] = []
        consumer = SurfaceConsumer(
            consumer_redis,
            KEYS,
            SUBSCRIBED,
            on_change=changes.append,
            on_reload=lambda symbol, tf: reloads.append((symbol, tf)),
        )
        await consumer.bootstrap()
        assert reloads == SUBSCRIBED
        assert_same_finals(consumer, producer)
        for k in range(12, 30):
            last = await producer.publish(minute_batch(k))
        # A broker correction in the middle and a repaired minute that was never published.
        await producer.publish([bar("EURUSD", M1, 7, rev=1), bar("EURUSD", M1, 31)])
        last = await producer.publish([bar("EURUSD", M1, 30)])
        await drain(consumer, last)
        assert_same_finals(consumer, producer)
        assert consumer.book.finals("GBPUSD", M1) == []  # not subscribed
        assert consumer.book.bars("EURUSD", M1)[-1] == bar("EURUSD", M1, 31)
        assert ChangeKind.REVISED in {change.kind for change in changes}
        assert all(change.changed for change in changes)
        assert consumer.stats.bootstraps == 1
        assert consumer.stats.malformed == 0

    run_with_clients(redis_server, body, **client)


def test_a_finals_only_consumer_leaves_previews_out_and_has_the_same_finals(
    redis_server: RedisServer,
) -> None:
    async def body(producer_redis: Redis, consumer_redis: Redis, plain_redis: Redis) -> None:
        producer = Producer(producer_redis)
        finals_only = SurfaceConsumer(consumer_redis, KEYS, SUBSCRIBED, finals_only=True)
        plain = SurfaceConsumer(plain_redis, KEYS, SUBSCRIBED)
        for each in (finals_only, plain):
            await each.bootstrap()
        last = await producer.publish(minute_batch(0))
        for k in range(1, 20):
            last = await producer.publish(minute_batch(k))
        for each in (finals_only, plain):
            await drain(each, last)
        assert_same_finals(finals_only, producer)
        assert_same_finals(plain, producer)
        previews = sum(
            1
            for k in range(20)
            for e in minute_batch(k)
            if not e.complete and (e.symbol, e.tf) in SUBSCRIBED
        )
        assert previews > 0
        assert finals_only.stats.previews_skipped == previews
        assert plain.stats.previews_skipped == 0
        # The plain book holds the live preview of the minute after the last; this one does not.
        assert any(not b.complete for b in plain.book.bars("EURUSD", M1))
        assert all(b.complete for b in finals_only.book.bars("EURUSD", M1))

    run_with_clients(redis_server, body, count=3)


def test_the_cluster_layout_is_read_stream_by_stream(redis_server: RedisServer) -> None:
    cluster = SurfaceKeys("fxtest", cluster=True)
    series = [("EURUSD", M1), ("EURUSD", M5), ("GBPUSD", M1)]

    async def body(producer_redis: Redis, consumer_redis: Redis) -> None:
        producer = Producer(producer_redis, keys=cluster)
        for k in range(10):
            await producer.publish(minute_batch(k))
        consumer = SurfaceConsumer(consumer_redis, cluster, series)
        await consumer.bootstrap()
        for k in range(10, 25):
            await producer.publish(minute_batch(k))
        await producer.publish([bar("GBPUSD", M1, 3, rev=1)])
        streams = {cluster.events_for("EURUSD"), cluster.events_for("GBPUSD")}
        assert set(consumer.cursors) == streams
        async with asyncio.timeout(WAIT_S):
            while consumer.cursors != {s: producer.stream_last[s] for s in streams}:
                await consumer.poll(block_ms=50, count=7)
        for symbol, tf in series:
            assert consumer.book.finals(symbol, tf) == producer.expected(symbol, tf)
        assert consumer.book.finals("GBPUSD", M1)[3].rev == 1
        assert consumer.stats.bootstraps == 1
        # Nothing was written to the single layout's stream.
        assert await producer_redis.exists(cluster.events) == 0

    run_with_clients(redis_server, body)


def test_events_produced_while_the_consumer_is_down_are_caught_up(
    redis_server: RedisServer,
) -> None:
    async def body(producer_redis: Redis, consumer_redis: Redis) -> None:
        producer = Producer(producer_redis)
        consumer = SurfaceConsumer(consumer_redis, KEYS, SUBSCRIBED)
        await consumer.bootstrap()  # nothing published yet
        last = await producer.publish(minute_batch(0))
        await drain(consumer, last)
        await consumer_redis.connection_pool.disconnect()  # the consumer goes away
        for k in range(1, 40):
            last = await producer.publish(minute_batch(k))
        await producer.publish([bar("EURUSD", M5, 2, rev=1)])
        last = await producer.publish([bar("EURUSD", M1, 3, rev=1)])
        await drain(consumer, last)  # reconnects and reads on from its cursor
        assert_same_finals(consumer, producer)
        assert consumer.stats.bootstraps == 1

    run_with_clients(redis_server, body)


def test_falling_behind_maxlen_reloads_the_snapshots(redis_server: RedisServer) -> None:
    async def body(producer_redis: Redis, consumer_redis: Redis) -> None:
        producer = Producer(producer_redis, maxlen=30)
        last = await producer.publish(minute_batch(0))
        consumer = SurfaceConsumer(consumer_redis, KEYS, SUBSCRIBED)
        await drain(consumer, last)
        for k in range(1, 25):  # far more than 30 entries while the consumer is not reading
            last = await producer.publish(minute_batch(k))
        await drain(consumer, last)
        assert consumer.stats.resyncs["stream_trimmed"] == 1
        assert_same_finals(consumer, producer)

    run_with_clients(redis_server, body)


def test_a_recreated_stream_with_older_ids_reloads_the_snapshots(
    redis_server: RedisServer,
) -> None:
    async def body(producer_redis: Redis, consumer_redis: Redis) -> None:
        producer = Producer(producer_redis)
        for k in range(5):
            last = await producer.publish(minute_batch(k))
        consumer = SurfaceConsumer(consumer_redis, KEYS, SUBSCRIBED)
        await drain(consumer, last)
        # Another server takes over, its clock behind ours: same keys, smaller stream ids.
        await producer_redis.flushall()
        behind = Producer(producer_redis, first_ms=1_000)
        behind.finals = producer.finals
        await behind.republish()
        for k in range(5, 9):
            last = await behind.publish(minute_batch(k))
        await drain(consumer, last)
        assert consumer.stats.resyncs["stream_recreated"] == 1
        assert_same_finals(consumer, behind)

    run_with_clients(redis_server, body)


def test_a_vanished_stream_keeps_the_book_until_the_producer_is_back(
    redis_server: RedisServer,
) -> None:
    async def body(producer_redis: Redis, consumer_redis: Redis) -> None:
        producer = Producer(producer_redis)
        for k in range(5):
            last = await producer.publish(minute_batch(k))
        consumer = SurfaceConsumer(consumer_redis, KEYS, SUBSCRIBED)
        await drain(consumer, last)
        before = consumer.book.bars("EURUSD", M1)
        await producer_redis.flushall()
        assert await consumer.poll(block_ms=0) == 0
        assert consumer.stats.resyncs["stream_vanished"] == 1
        assert consumer.book.bars("EURUSD", M1) == before  # no snapshot: nothing to replace
        assert consumer.cursor == StreamId(0, 0)
        await producer.republish()
        last = await producer.publish(minute_batch(5))
        await drain(consumer, last)
        assert_same_finals(consumer, producer)
        assert consumer.stats.resyncs["stream_vanished"] == 1  # no reload loop

    run_with_clients(redis_server, body)


@pytest.mark.parametrize(
    "client_retries", [0, None], ids=["client_retries_off", "client_retries_default"]
)
def test_redis_restart_mid_run_ends_with_the_producers_finals(
    redis_server: RedisServer, client_retries: int | None
) -> None:
    client: dict[str, Any] = {} if client_retries is None else {"retry": Retry(NoBackoff(), 0)}

    async def body(producer_redis: Redis, consumer_redis: Redis) -> None:
        producer = Producer(producer_redis)
        for k in range(10):
            await producer.publish(minute_batch(k))
        consumer = SurfaceConsumer(consumer_redis, KEYS, SUBSCRIBED, backoff=FAST)
        stop = asyncio.Event()
        runner = asyncio.create_task(consumer.run(stop, block_ms=50, count=5))
        try:
            await wait_until(lambda: has_same_finals(consumer, producer), "caught up before")
            await asyncio.to_thread(redis_server.restart)  # everything in Redis is gone
            # The producer reconnects and rebuilds the surface, as the connector does.
            await producer_redis.connection_pool.disconnect()
            last = await producer.republish()
            # Reconnected and through the new stream (the old finals alone would already match).
            await wait_until(lambda: consumer.cursor == last, "back on the new stream")
            read_before = consumer.stats.events_read
            for k in range(10, 16):
                await producer.publish(minute_batch(k))
            await producer.publish([bar("EURUSD", M1, 4, rev=1), bar("EURUSD", M5, 1, rev=1)])
            await wait_until(lambda: has_same_finals(consumer, producer), "live after restart")
            assert consumer.stats.events_read > read_before  # read live, not from a reload
        finally:
            stop.set()
            async with asyncio.timeout(WAIT_S):
                await runner
        assert_same_finals(consumer, producer)
        if client_retries == 0:
            assert consumer.stats.connection_failures >= 1
            assert consumer.stats.bootstraps >= 2

    run_with_clients(redis_server, body, **client)


def test_malformed_data_is_counted_and_skipped(redis_server: RedisServer) -> None:
    async def body(producer_redis: Redis, consumer_redis: Redis) -> None:
        producer = Producer(producer_redis)
        await producer.publish(minute_batch(0))
        # A snapshot the contract does not allow: the series is then read from the stream.
        await producer_redis.hset(KEYS.snapshot("EURUSD", M1), SNAPSHOT_BARS_FIELD, b"[{")
        consumer = SurfaceConsumer(consumer_redis, KEYS, SUBSCRIBED)
        await consumer.bootstrap()
        assert consumer.stats.malformed == 1
        assert consumer.cursor == StreamId(0, 0)
        good = encode(bar("EURUSD", M1, 1))
        await producer.add_raw({STREAM_FIELD: b"not json"})
        await producer.add_raw({"other": good})
        await producer.add_raw({STREAM_FIELD: good.replace(b'"rev"', b'"revv"')})
        last = await producer.publish([bar("EURUSD", M1, 1)])
        await drain(consumer, last)
        assert consumer.stats.malformed == 4
        assert "entry" in consumer.stats.last_malformed
        assert_same_finals(consumer, producer)

    run_with_clients(redis_server, body)


def test_connection_errors_become_surface_unavailable(redis_server: RedisServer) -> None:
    async def body(consumer_redis: Redis) -> None:
        redis_server.kill()
        consumer = SurfaceConsumer(consumer_redis, KEYS, SUBSCRIBED, backoff=FAST)
        with pytest.raises(SurfaceUnavailable):
            await consumer.bootstrap()
        with pytest.raises(SurfaceUnavailable):
            await consumer.poll()
        limited = SurfaceConsumer(
            consumer_redis, KEYS, SUBSCRIBED, backoff=Backoff(0.01, 0.02, max_failures=3)
        )
        async with asyncio.timeout(WAIT_S):
            with pytest.raises(SurfaceUnavailable):
                await limited.run(asyncio.Event(), block_ms=10)
        assert limited.stats.connection_failures == 3

    run_with_clients(redis_server, body, count=1, retry=Retry(NoBackoff(), 0))


def test_redis_refusals_and_wrong_keys_are_mapped_to_our_errors(redis_server: RedisServer) -> None:
    async def attempt(error: type[Exception], match: str, **options: Any) -> None:
        client = Redis.from_url(redis_server.url, retry=Retry(NoBackoff(), 0), **options)
        try:
            with pytest.raises(error, match=match):
                await SurfaceConsumer(client, KEYS, SUBSCRIBED).poll()
        finally:
            await client.aclose()

    async def body(admin: Redis) -> None:
        password = secrets.token_hex(8)
        await admin.acl_setuser(
            "no_xinfo",
            enabled=True,
            passwords=[f"+{password}"],
            keys=["*"],
            categories=["+@all"],
            commands=["-xinfo"],
        )
        await attempt(ConfigError, "ACL", username="no_xinfo", password=password)
        await admin.client_pause(1000, all=True)
        await attempt(SurfaceUnavailable, "Timeout", socket_timeout=0.1)  # no answer
        await admin.client_unpause()
        await admin.set(KEYS.events, b"not a stream")
        await attempt(ContractViolation, "WRONGTYPE")
        await admin.config_set("requirepass", secrets.token_hex(8))
        await attempt(ConfigError, "credentials", password=password)

    run_with_clients(redis_server, body, count=1)


def test_run_returns_promptly_when_stopped_during_a_long_block(redis_server: RedisServer) -> None:
    async def body(server_redis: Redis, consumer_redis: Redis) -> None:
        consumer = SurfaceConsumer(consumer_redis, KEYS, SUBSCRIBED)
        stop = asyncio.Event()
        runner = asyncio.create_task(consumer.run(stop, block_ms=60_000))

        async def blocked() -> bool:
            info = await server_redis.info("clients")
            return int(info["blocked_clients"]) == 1

        await wait_until(blocked, "the consumer blocks in XREAD")
        stop.set()
        async with asyncio.timeout(5):  # far below the 60 s block
            await runner
        assert int((await server_redis.info("clients"))["blocked_clients"]) == 0

    run_with_clients(redis_server, body)


def test_a_block_longer_than_the_socket_timeout_is_refused(redis_server: RedisServer) -> None:
    async def body(consumer_redis: Redis) -> None:
        consumer = SurfaceConsumer(consumer_redis, KEYS, SUBSCRIBED)
        with pytest.raises(ConfigError, match="socket_timeout"):
            await consumer.poll(block_ms=2000)
        assert await consumer.poll(block_ms=100) == 0
        with pytest.raises(ValueError, match="block_ms"):
            await consumer.run(asyncio.Event(), block_ms=0)

    run_with_clients(redis_server, body, count=1, socket_timeout=1.0)


def test_a_cluster_master_outage_is_surface_unavailable_until_it_returns(
    redis_cluster: RedisClusterNodes,
) -> None:
    """A dead master (a refused connection for its symbol, CLUSTERDOWN from the live masters
    for the others) is a passing outage, never a contract fault: the consumer reads on from
    its cursors when it is back."""
    cluster = SurfaceKeys("fxtest", cluster=True)
    series = [("EURUSD", M1), ("EURUSD", M5), ("USDJPY", M1)]

    async def minute(producer: Producer, k: int) -> None:
        """Minute k of EURUSD (on the master that dies) and USDJPY (on one that stays), each
        in its own slot's transaction."""
        await producer.publish([e for e in minute_batch(k) if e.symbol == "EURUSD"])
        await producer.publish([bar("USDJPY", M1, k, ticks=9), bar("USDJPY", M1, k)])

    async def main() -> None:
        producer_redis = connect_cluster(redis_cluster.url, Secrets())
        consumer_redis = connect_cluster(redis_cluster.url, Secrets())
        try:
            producer = Producer(producer_redis, keys=cluster)  # type: ignore[arg-type]
            for k in range(10):
                await minute(producer, k)
            consumer = SurfaceConsumer(consumer_redis, cluster, series, backoff=FAST)  # type: ignore[arg-type]
            await consumer.bootstrap()
            victim = redis_cluster.index_of_key(cluster.events_for("EURUSD"))
            witness = redis_cluster.index_of_key(cluster.events_for("USDJPY"))
            assert witness != victim
            redis_cluster.kill(victim)
            async with asyncio.timeout(WAIT_S * 3):
                while redis_cluster.state(witness) != "fail":
                    with pytest.raises(SurfaceUnavailable):
                        await consumer.poll(block_ms=0)
                    await asyncio.sleep(0.05)
            with pytest.raises(SurfaceUnavailable):  # the cluster answers CLUSTERDOWN now
                await consumer.poll(block_ms=0)
            redis_cluster.start(victim)
            # Back but not yet ok: the returning master answers LOADING, then CLUSTERDOWN until
            # it has heard from the others; every poll of that window is an outage too.
            async with asyncio.timeout(WAIT_S * 3):
                while not all(redis_cluster.state(i) == "ok" for i in range(3)):
                    with contextlib.suppress(SurfaceUnavailable):
                        await consumer.poll(block_ms=0)
                    await asyncio.sleep(0.005)
            await producer_redis.aclose()  # its connection to the killed node is gone
            producer_redis = producer.redis = connect_cluster(redis_cluster.url, Secrets())  # type: ignore[assignment]
            for k in range(10, 15):
                await minute(producer, k)
            streams = [cluster.events_for("EURUSD"), cluster.events_for("USDJPY")]
            async with asyncio.timeout(WAIT_S):
                while consumer.cursors != {s: producer.stream_last[s] for s in streams}:
                    with contextlib.suppress(SurfaceUnavailable):  # the client finds the node
                        await consumer.poll(block_ms=0, count=7)
            for symbol, tf in series:
                assert consumer.book.finals(symbol, tf) == producer.expected(symbol, tf)
            assert consumer.stats.bootstraps == 1
        finally:
            await producer_redis.aclose()
            await consumer_redis.aclose()

    asyncio.run(main())
