"""bench/cluster_launch.py: one node, and a 3-master cluster that routes keys to every node."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import redis.cluster
from bench.cluster_launch import start_cluster, start_node

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
    try:
        client = redis.cluster.RedisCluster.from_url(cluster.url)
        symbols = [f"S{i}" for i in range(30)]
        for symbol in symbols:
            client.set(f"fxconnector:tick:{{{symbol}}}", symbol)
        owners = {
            client.get_node_from_key(f"fxconnector:tick:{{{s}}}").port  # type: ignore[no-untyped-call]
            for s in symbols
        }
        assert owners == {node.port for node in cluster.nodes}
        assert client.get("fxconnector:tick:{S7}") == b"S7"
        client.close()
    finally:
        cluster.stop()
    assert all(
        node.process is not None and node.process.poll() is not None for node in cluster.nodes
    )
