"""The one translation of redis-py errors for the writers of the surface (surface, leases).

Rules: redis-py and socket errors become SurfaceUnavailable naming what failed; redis-py's
messages name the host and the command, never a credential. Anything else propagates (a bug).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    NoPermissionError,
    RedisError,
)

from fxconnector.core.errors import SurfaceUnavailable


@contextlib.contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Translate redis-py and socket errors into SurfaceUnavailable (the one boundary)."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise SurfaceUnavailable(f"redis {what} failed: {type(exc).__name__}: {exc}") from exc


def refused_credentials(exc: BaseException) -> bool:
    """True when Redis refused our username/password or what the ACL lets us do."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(
            cause, AuthenticationError | AuthenticationWrongNumberOfArgsError | NoPermissionError
        ):
            return True
        cause = cause.__cause__
    return False
