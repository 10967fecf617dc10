"""A real 3-master Redis Cluster on loopback for tests (`redis-server --cluster-enabled yes` x3).

Each node runs in its own folder on a free loopback port with `appendonly yes`, so a master
killed with SIGKILL (`kill(i)`) comes back from `start(i)` with its data and its slots (its
`nodes.conf` keeps the cluster's shape). `redis-cli --cluster create --cluster-replicas 0`
joins them; `wait_ok()` waits until every node says `cluster_state:ok`. `stop()` kills every
node that still runs.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from tests.redis_server import free_port, redis_binary

START_WITHIN_S = 15.0


def redis_cli() -> str | None:
    return shutil.which("redis-cli")


def free_cluster_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10_000 > 65_535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisClusterNodes:
    """Three cluster-enabled redis-server processes joined into one cluster (no replicas)."""

    def __init__(self, folder: Path, masters: int = 3) -> None:
        self.folder = folder
        self.ports = [free_cluster_port() for _ in range(masters)]
        self._processes: list[subprocess.Popen[bytes] | None] = [None] * masters

    @property
    def url(self) -> str:
        """A URL naming one node (any node will do for a cluster client)."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    def node_folder(self, index: int) -> Path:
        return self.folder / f"node{index}"

    def start(self, index: int) -> None:
        """Start node `index` (again): its AOF and nodes.conf bring back data and slots."""
        folder = self.node_folder(index)
        folder.mkdir(parents=True, exist_ok=True)
        port = self.ports[index]
        self._processes[index] = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--appendonly",
                "yes",
                "--save",
                "",
                "--dir",
                str(folder),
                "--logfile",
                str(folder / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_WITHIN_S
        with redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2) as client:
            while True:
                try:
                    if client.ping():
                        return
                except redis.exceptions.BusyLoadingError:
                    pass  # loading its AOF
                except redis.exceptions.ConnectionError:
                    process = self._processes[index]
                    if time.monotonic() > deadline or (process and process.poll() is not None):
                        raise RuntimeError(f"redis-server did not start: see {folder}") from None
                time.sleep(0.02)

    def create(self) -> None:
        """Start every node and join them into a cluster of masters covering every slot."""
        cli = redis_cli()
        if cli is None:
            raise RuntimeError("redis-cli is not on PATH")
        for index in range(len(self.ports)):
            self.start(index)
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ok()

    def wait_ok(self, within_s: float = START_WITHIN_S * 2) -> None:
        """Until every node reports `cluster_state:ok` (RuntimeError past the bound)."""
        deadline = time.monotonic() + within_s
        while not all(self.state(index) == "ok" for index in range(len(self.ports))):
            if time.monotonic() > deadline:
                states = [self.state(index) for index in range(len(self.ports))]
                raise RuntimeError(f"cluster not ok within {within_s} s: {states}")
            time.sleep(0.05)

    def state(self, index: int) -> str:
        """`cluster_state` of node `index` (`ok`, `fail`), or `down` when it does not answer."""
        try:
            with redis.Redis(
                host="127.0.0.1", port=self.ports[index], socket_timeout=1.0
            ) as client:
                info = client.execute_command("CLUSTER INFO")
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

    def index_of_key(self, key: str) -> int:
        """The node (index) serving `key`'s slot."""
        with self.client() as client:
            node = client.get_node_from_key(key)
        return self.ports.index(int(node.port))

    def kill(self, index: int) -> None:
        """SIGKILL node `index` (what it acknowledged is in its AOF: the OS has it)."""
        process = self._processes[index]
        if process is not None:
            process.kill()
            process.wait(timeout=10)
            self._processes[index] = None

    def stop(self) -> None:
        for index in range(len(self.ports)):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self.kill(index)

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[0], decode_responses=False)
