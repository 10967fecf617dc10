"""Checking `surface.redis_url` when the config is loaded, by redis-py's own URL rules.

Rules:
- Schemes `redis://`, `rediss://` (TLS) and `unix://` (with a socket path).
- The URL is parsed as redis-py parses it (`parse_url`); every query option must be one its
  connection class (or pool) takes, so an unknown option (`?foo=1`) is a ConfigError here
  instead of a TypeError inside a running connector.
- No credentials in the URL (user info, `?username=`, `?password=`): redis-py lets URL values win
  over keyword arguments, so a URL secret would silently override the secrets file and end up
  in config files and logs.
- Messages name the scheme and host only, never the rest of the URL.
- With `surface.cluster = true` the URL names any node of the cluster: TCP only, database 0.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Final
from urllib.parse import parse_qs, urlsplit

import redis.asyncio.connection
from redis.asyncio.connection import Connection, parse_url

from fxconnector.core.errors import ConfigError

SCHEMES: Final = ("redis", "rediss", "unix")
_CREDENTIAL_QUERY_KEYS: Final = frozenset({"username", "password"})
#: Options redis-py gives the pool, not the connection.
_POOL_OPTIONS: Final = frozenset({"max_connections"})


def check_redis_url(url: str, setting: str = "surface.redis_url") -> None:
    """ConfigError unless redis-py can connect with `url` as given (nothing is connected)."""
    try:
        parts = urlsplit(url)
        has_user, has_password = parts.username is not None, parts.password is not None
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:  # e.g. `redis://[::1` (Invalid IPv6 URL), a port that is no number
        raise ConfigError(f"{setting} is not a valid URL ({exc})") from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(f"{setting} must start with redis://, rediss:// or unix://")
    where = describe(url)
    query_keys = set(parse_qs(parts.query)) & _CREDENTIAL_QUERY_KEYS
    if has_user or has_password or query_keys:
        raise ConfigError(
            f"{setting} {where} carries credentials; put them in the secrets "
            "file (redis_username, redis_password) or FXCONNECTOR_REDIS_USERNAME / "
            "FXCONNECTOR_REDIS_PASSWORD instead"
        )
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError(f"{setting} unix:// needs a socket path, e.g. unix:///run/r.sock")
    try:
        options = parse_url(url)
    except ValueError as exc:  # redis-py's messages name the bad option and value
        raise ConfigError(f"{setting} {where}: {exc}") from None
    connection_class: type = options.pop("connection_class", Connection)
    unknown = sorted(set(options) - _known_options(connection_class.__name__) - _POOL_OPTIONS)
    if unknown:
        raise ConfigError(
            f"{setting} {where}: unknown option {', '.join(map(repr, unknown))} "
            "(redis-py has no such connection option; remove it from the URL)"
        )


def check_cluster_url(url: str, setting: str = "surface.redis_url") -> None:
    """ConfigError unless `url` can name a node of a Redis Cluster (`surface.cluster = true`):
    a TCP URL (redis:// or rediss://) of database 0; the embedded server is no cluster."""
    if not url:
        raise ConfigError(
            "surface.cluster = true needs surface.redis_url naming a node of the cluster "
            "(the embedded Redis is a single node); set it or leave surface.cluster false"
        )
    parts = urlsplit(url)
    if parts.scheme == "unix":
        raise ConfigError(f"{setting} {describe(url)}: a Redis Cluster is reached over TCP only")
    options = parse_url(url)
    if options.get("db", 0):
        raise ConfigError(f"{setting} {describe(url)}: a Redis Cluster has database 0 only")


def describe(url: str) -> str:
    """Scheme and host (or socket path) of `url`: safe to show, whatever the URL holds."""
    try:
        parts = urlsplit(url)
        where = parts.path if parts.scheme == "unix" else (parts.hostname or "")
    except ValueError:
        return "(unparsable URL)"
    return f"({parts.scheme}://{where})"


@cache
def _known_options(class_name: str) -> frozenset[str]:
    """The keyword arguments redis-py's connection class `class_name` (and its bases) take."""
    names: set[str] = set()
    for klass in getattr(redis.asyncio.connection, class_name).__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for name, parameter in inspect.signature(init).parameters.items():
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                names.add(name)
    names.discard("self")
    return frozenset(names)
