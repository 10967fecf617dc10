"""Two `fxconnector run` processes sharing one namespace on a real 3-master Redis Cluster:
disjoint symbols, a third process with an overlapping symbol refused, and a master SIGKILLed
for a while (a process starts and catches up meanwhile): nothing acknowledged is lost and every
final of each process's store (the truth) ends up in its symbol's stream and snapshots."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec
import pytest
from bench.cluster_launch import RedisClusterNodes

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.publish.keys import (
    SNAPSHOT_BARS_FIELD,
    STREAM_FIELD,
    SurfaceKeys,
)
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.app.connector import Connector
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

KEYS: Final = SurfaceKeys("fxc", cluster=True)
FIRST: Final = ("EURUSD", "GBPUSD")
SECOND: Final = ("USDJPY", "AUDUSD")
_EVENT: Final = msgspec.json.Decoder(OhlcvEvent)
_BARS: Final = msgspec.json.Decoder(list[OhlcvEvent])
OUTAGE_S: Final = 5.0


def connector(root: Path, name: str, url: str, symbols: tuple[str, ...]) -> Connector:
    listed = ", ".join(f'"{symbol}"' for symbol in symbols)
    return Connector(
        root / name,
        "--redis-url",
        url,
        "--set",
        "surface.cluster=true",
        "--set",
        f"surface.namespace={KEYS.namespace}",
        "--set",
        "surface.events_retention_s=3600",
        "--set",
        f"broker.symbols=[{listed}]",
        "--set",
        "broker.startup_lookback_mins=120",
        ready_within_s=90.0,
    )


@contextlib.contextmanager
def running(*connectors: Connector) -> Iterator[None]:
    try:
        yield
    finally:
        for each in connectors:
            each.cleanup()


def streams(cluster: RedisClusterNodes, symbols: tuple[str, ...]) -> dict[bytes, bytes]:
    """Every entry (id -> event JSON) of the symbols' streams."""
    out: dict[bytes, bytes] = {}
    with cluster.client() as client:
        for symbol in symbols:
            for entry_id, fields in client.xrange(KEYS.events_for(symbol)):
                out[symbol.encode() + b"/" + entry_id] = fields[STREAM_FIELD.encode()]
    return out


def test_two_processes_share_a_cluster_and_a_master_outage_loses_nothing(
    tmp_path: Path, redis_cluster: RedisClusterNodes
) -> None:
    first = connector(tmp_path, "p1", redis_cluster.url, FIRST)
    second: Connector | None = None
    with running(first):
        first.wait_ready()
        # A third process configured with a symbol the first publishes is refused, naming both.
        third = connector(tmp_path, "p3", redis_cluster.url, ("GBPUSD", "NZDUSD"))
        code, lines = third.wait_exit()
        assert code == 2, lines
        refusal = "\n".join(lines)
        assert "GBPUSD" in refusal
        assert f"{socket.gethostname()}:{tmp_path / 'p1'}" in refusal
        acknowledged = streams(redis_cluster, FIRST)
        assert acknowledged  # the first process's catch-up finals are published
        # A master serving the first process's symbol dies; the second process starts (and
        # catches up: finals flow) while the cluster is down.
        victim = redis_cluster.index_of_key(KEYS.events_for(FIRST[0]))
        redis_cluster.kill(victim)
        second = connector(tmp_path, "p2", redis_cluster.url, SECOND)
        with running(second):
            time.sleep(OUTAGE_S)
            redis_cluster.start(victim)
            redis_cluster.wait_ok()
            second.wait_ready()
            first.wait_ready()
            assert second.stop() == 0
        assert first.stop() == 0
        # Both noticed the outage (the second one while catching up) and recovered.
        for each in (first, second):
            assert "surface.degraded" in each.output(), each.tail()
    # Nothing the cluster acknowledged before the outage is lost.
    after = streams(redis_cluster, FIRST)
    assert {k: after.get(k) for k in acknowledged} == acknowledged
    # Every final of each process's store is in its symbol's stream, and the snapshots are
    # the store's newest finals.
    with redis_cluster.client() as client:
        assert client.smembers(KEYS.symbols) == {s.encode() for s in (*FIRST, *SECOND)}
        for name, symbols in (("p1", FIRST), ("p2", SECOND)):
            store = JsonlStore(tmp_path / name / "ssot")
            store.open()
            try:
                for symbol in symbols:
                    events = [
                        _EVENT.decode(fields[STREAM_FIELD.encode()])
                        for _, fields in client.xrange(KEYS.events_for(symbol))
                    ]
                    assert {e.symbol for e in events} == {symbol}
                    published = {(*e.key, e.rev) for e in events if e.complete}
                    for tf in Timeframe:
                        stored = [b.event() for b in store.bars(symbol, tf, 0, 2**62)]
                        missing = [b for b in stored if (*b.key, b.rev) not in published]
                        assert not missing, (name, symbol, tf, missing[:3])
                        if not stored:
                            continue
                        raw = client.hget(KEYS.snapshot(symbol, tf), SNAPSHOT_BARS_FIELD)
                        assert raw is not None, (symbol, tf)
                        assert _BARS.decode(raw) == stored[-500:], (name, symbol, tf)
            finally:
                store.close()


def test_on_one_redis_server_a_symbol_held_by_another_process_is_refused_too(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    first = Connector(
        tmp_path / "p1", "--redis-url", redis_server.url, "--set", 'broker.symbols=["EURUSD"]'
    )
    with running(first):
        first.wait_ready()
        other = Connector(
            tmp_path / "p2", "--redis-url", redis_server.url, "--set", 'broker.symbols=["EURUSD"]'
        )
        code, lines = other.wait_exit()
        assert code == 2, lines
        assert "symbol EURUSD is published by another connector process" in "\n".join(lines)
        assert first.stop() == 0
    # A clean stop released the lease: the symbol can be taken at once.
    with redis_server.client() as client:
        assert client.get(SurfaceKeys().lease("EURUSD")) is None
