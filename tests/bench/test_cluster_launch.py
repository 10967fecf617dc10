"""bench/cluster_launch.py: one node, a 3-master cluster that routes keys to every node, and the
persisting cluster of the tests' `redis_cluster` fixture (a killed master keeps its data)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from bench.cluster_launch import RedisClusterNodes, start_cluster, start_node

pytestmark = pytest.mark.redis


def test_a_node_starts_and_stops(tmp_path: Path) -> None:
    node = start_node(tmp_path / "node")
    client = redis.Redis.from_url(node.url)
    assert client.ping()
    client.close()
    node.stop()
    assert node.process is not None
    assert node.process.poll() is not None


def test_a_cluster_of_three_masters_holds_keys_on_every_node(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path / "cluster")
    clients = [redis.Redis(port=node.port) for node in cluster.nodes]
    try:
        owners: set[int] = set()
        for index in range(30):
            key = f"fxconnector:tick:{{S{index}}}"
            accepted, refused = [], []
            for node, client in zip(cluster.nodes, clients, strict=True):
                try:
                    client.set(key, index)  # a node that does not own the slot answers MOVED
                except redis.exceptions.MovedError as exc:
                    refused.append(exc.node_addr)
                else:
                    accepted.append(node.port)
            assert len(accepted) == 1
            assert refused == [("127.0.0.1", accepted[0])] * 2  # both point to the owner
            owners.update(accepted)
        assert owners == {node.port for node in cluster.nodes}
    finally:
        for client in clients:
            client.close()
        cluster.stop()
    assert all(
        node.process is not None and node.process.poll() is not None for node in cluster.nodes
    )


def test_three_masters_cover_every_slot_and_a_killed_master_keeps_its_data(
    redis_cluster: RedisClusterNodes,
) -> None:
    """The tests' fixture (persist=True): a master killed with SIGKILL comes back with its data
    and its slots, and the cluster is ok again."""
    with redis_cluster.client() as client:
        masters = client.get_primaries()
        assert sorted(int(node.port) for node in masters) == sorted(redis_cluster.ports)
        covered = sum(end - start + 1 for start, end in _slot_ranges(client))
        assert covered == 16384
        keys = [f"fixture:{{K{i}}}" for i in range(30)]
        for key in keys:
            client.set(key, key)
        assert len({redis_cluster.index_of_key(key) for key in keys}) == 3
    victim = redis_cluster.index_of_key(keys[0])
    redis_cluster.kill(victim)
    assert redis_cluster.state(victim) == "down"
    redis_cluster.start(victim)
    redis_cluster.wait_ok()
    with redis_cluster.client() as client:
        assert [client.get(key) for key in keys] == [key.encode() for key in keys]


def test_stop_leaves_no_node_running(redis_cluster: RedisClusterNodes) -> None:
    redis_cluster.stop()
    assert [redis_cluster.state(i) for i in range(3)] == ["down"] * 3
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(host="127.0.0.1", port=redis_cluster.ports[0], socket_timeout=1).ping()


def _slot_ranges(client: redis.RedisCluster) -> list[tuple[int, int]]:
    slots = client.cluster_slots()
    return [(int(start), int(end)) for start, end in slots]
