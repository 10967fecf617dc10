"""bench/cluster_launch.py: one node, and a 3-master cluster that routes keys to every node."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
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
