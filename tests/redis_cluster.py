"""The Redis Cluster the tests use is bench/cluster_launch.py's (one implementation for the tests
and the benchmarks); this name stays for the test files that import it from here."""

from __future__ import annotations

from bench.cluster_launch import RedisClusterNodes, redis_cli, start_cluster

__all__ = ["RedisClusterNodes", "redis_cli", "start_cluster"]
