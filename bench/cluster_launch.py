"""Start and stop throwaway redis-server processes: one node, or a 3-master Redis Cluster.

The one place the benchmarks start Redis (and the one the cluster tests can share): every node
is `redis-server` from PATH on a free loopback port, in its own folder, keeping nothing on disk.
A cluster is `redis-server --cluster-enabled yes` per node, joined by
`redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`, and is returned once every
node reports `cluster_state:ok`. `stop()` ends exactly the processes it started.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

#: Redis Cluster's bus listens on the client port + 10000.
_BUS_OFFSET = 10_000


def free_port(bus: bool = False) -> int:
    """A free loopback port (and, with `bus`, its cluster bus port free too)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if not bus:
            return port
        if port + _BUS_OFFSET < 65_536:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind(("127.0.0.1", port + _BUS_OFFSET))
                except OSError:
                    continue
            return port


@dataclass
class RedisNode:
    """One redis-server on 127.0.0.1:`port` with its files under `folder`."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not on PATH")
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.folder)]
        command += ["--logfile", str(self.folder / "redis.log"), *extra]
        self.process = subprocess.Popen(  # noqa: S603 - redis-server from PATH, our arguments
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        with redis.Redis(port=self.port, socket_connect_timeout=0.2) as client:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"redis-server on {self.port} did not start") from None
                    time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_node(folder: Path) -> RedisNode:
    node = RedisNode(folder, free_port())
    node.start()
    return node


@dataclass
class RedisClusterNodes:
    """A running cluster of `nodes` masters; `url` is any node's (a cluster client finds all)."""

    nodes: list[RedisNode]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def pids(self) -> list[int]:
        return [node.pid for node in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(folder: Path, masters: int = 3) -> RedisClusterNodes:
    """`masters` cluster-enabled nodes joined into one cluster (no replicas), state ok."""
    cli = shutil.which("redis-cli")
    if cli is None:
        raise SystemExit("redis-cli is not on PATH")
    nodes = [RedisNode(folder / f"node{i}", free_port(bus=True)) for i in range(masters)]
    cluster = RedisClusterNodes(nodes)
    try:
        for node in nodes:
            node.start("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        subprocess.run(  # noqa: S603 - redis-cli from PATH, our arguments
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        for node in nodes:
            with redis.Redis(port=node.port) as client:
                while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    if time.monotonic() > deadline:
                        raise SystemExit("the redis cluster did not reach cluster_state:ok")
                    time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise
    return cluster
