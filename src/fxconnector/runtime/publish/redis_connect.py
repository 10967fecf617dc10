"""One way to open a Redis client for the public surface: URL + secrets -> `redis.asyncio.Redis`,
or `redis.asyncio.cluster.RedisCluster` with `surface.cluster = true` (the URL names any node).

Rules:
- URL schemes `redis://`, `rediss://` (TLS) and `unix://`. Query options (`ssl_ca_certs`,
  `ssl_certfile`, `ssl_keyfile`, `ssl_cert_reqs`, `db`, ...) pass through to redis-py unchanged.
- Credentials come only from `Secrets` (`redis_username`, `redis_password`). A URL carrying a
  username or password (user info or `?username=`/`?password=` query) is refused: redis-py lets
  URL values win over keyword arguments, so a URL secret would silently override the secrets
  file and end up in config files and logs.
- A password is never logged and never put in an exception message; errors name the URL's
  scheme and host only.
- Bounded: connect timeout 2 s, socket timeout 5 s, a health-check PING on connections idle
  longer than 15 s, and no redis-py retry loop: the surface owns backoff, and a failed call
  must surface at once so a Redis restart is noticed (and the surface rebuilt).
- Nothing connects here: the client connects on its first command (a cluster client learns
  the cluster's nodes and slots then, from the node the URL names).
- Cluster: the same rules (secrets, timeouts, no retry loop: a failed node or a CLUSTERDOWN
  surfaces at once); redis-py follows MOVED/ASK redirections itself. A bounded cluster pool
  is bounded per node and fails at once when full (redis-py has no blocking cluster pool).
- Each role gets its own client (the publisher, the push fan-out's reader, the HTTP requests),
  so none waits on another's connections. `max_connections` bounds a client's pool: a command
  that finds every connection busy waits at most `pool_timeout_s`, then fails like a refused
  connection (the HTTP API answers 503), instead of redis-py's immediate MaxConnectionsError.

This module must not know key names or what is published.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException

from fxconnector.config.redis_url import check_redis_url, describe
from fxconnector.config.secrets import Secrets
from fxconnector.core.errors import ConfigError

CONNECT_TIMEOUT_S: Final = 2.0
SOCKET_TIMEOUT_S: Final = 5.0
HEALTH_CHECK_INTERVAL_S: Final = 15
#: How long a command waits for a connection of a bounded pool before it fails.
POOL_TIMEOUT_S: Final = 1.0

#: The client the surface writes and reads with: one server, or a Redis Cluster.
SurfaceClient: TypeAlias = redis.asyncio.Redis | RedisCluster


def connect_surface(
    url: str, secrets: Secrets, *, cluster: bool, max_connections: int | None = None
) -> SurfaceClient:
    """`connect_cluster` when `cluster`, else `connect_redis`."""
    if cluster:
        return connect_cluster(url, secrets, max_connections=max_connections)
    return connect_redis(url, secrets, max_connections=max_connections)


def connect_cluster(
    url: str, secrets: Secrets, *, max_connections: int | None = None
) -> RedisCluster:
    """A Redis Cluster client from the node `url` names (nothing is sent until first use);
    with `max_connections`, each node's pool is bounded."""
    check_redis_url(url)
    username, password = secrets.redis_username, secrets.redis_password
    bound: dict[str, Any] = {} if max_connections is None else {"max_connections": max_connections}
    try:
        return RedisCluster.from_url(
            url,
            **bound,
            decode_responses=False,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            health_check_interval=HEALTH_CHECK_INTERVAL_S,
            retry=Retry(NoBackoff(), 0),
            username=None if username is None else username.reveal(),
            password=None if password is None else password.reveal(),
        )
    except (ValueError, RedisClusterException) as exc:
        raise ConfigError(f"surface.redis_url {describe(url)}: {exc}") from None


def connect_redis(
    url: str,
    secrets: Secrets,
    *,
    max_connections: int | None = None,
    pool_timeout_s: float = POOL_TIMEOUT_S,
) -> redis.asyncio.Redis:
    """A client for `url` with credentials from `secrets` (nothing is sent until first use);
    with `max_connections`, its pool is bounded and a caller waits for a free connection."""
    check_redis_url(url)
    username, password = secrets.redis_username, secrets.redis_password
    options: dict[str, Any] = {
        "decode_responses": False,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry": Retry(NoBackoff(), 0),
        "username": None if username is None else username.reveal(),
        "password": None if password is None else password.reveal(),
    }
    try:
        if max_connections is None:
            return redis.asyncio.Redis.from_url(url, **options)
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=pool_timeout_s, **options
        )
        return redis.asyncio.Redis.from_pool(pool)
    except ValueError as exc:
        # redis-py's messages name the bad option, never a credential (none is in the URL).
        raise ConfigError(f"surface.redis_url {describe(url)}: {exc}") from None
