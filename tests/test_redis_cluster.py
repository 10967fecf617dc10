"""The Redis Cluster fixture itself: three masters covering every slot, a killed master comes
back with its data and the cluster is ok again, and nothing is left running afterwards."""

from __future__ import annotations

import pytest
import redis

from tests.redis_cluster import RedisClusterNodes

pytestmark = pytest.mark.redis


def test_three_masters_cover_every_slot_and_a_killed_master_keeps_its_data(
    redis_cluster: RedisClusterNodes,
) -> None:
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
