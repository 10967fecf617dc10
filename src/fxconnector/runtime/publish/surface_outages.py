"""The Redis surface's outages: what status says of them and how long to wait between retries.

Rules:
- `errors` keeps the outages for status `errors[]`: one entry when an outage starts
  (`redis.unavailable`, or `redis.auth_failed` when Redis refused our credentials or
  permissions), not one per retry; the next outage after a recovery is a new entry.
- Retries wait a capped exponential delay with equal jitter (never less than half the delay),
  so a fleet does not reconnect in step.

It knows nothing of Redis commands: the surface translates Redis exceptions into
SurfaceUnavailable (redis_errors.py) and hands them here.
"""

from __future__ import annotations

import contextlib
import random
from collections import deque
from collections.abc import Callable, Iterator
from typing import Final

from fxconnector.core.errors import SurfaceUnavailable
from fxconnector.core.model.status import ErrorEntry
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.publish.redis_errors import refused_credentials

#: Outages kept for status errors[].
ERRORS_KEPT: Final = 20
BACKOFF_BASE_S: Final = 0.1
BACKOFF_CAP_S: Final = 5.0


class Outages:
    """The last Redis error, one status entry per outage, the delay before the next retry."""

    def __init__(self, clock: Clock, on_redis_error: Callable[[], None] | None = None) -> None:
        self._clock = clock
        self._on_redis_error = on_redis_error
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not a secret
        self.last_error: str | None = None  # the last Redis error
        #: Outages (one entry each) for status errors[], newest last.
        self.errors: deque[ErrorEntry] = deque(maxlen=ERRORS_KEPT)
        self._outage_code: str | None = None  # the code noted for the outage going on

    def note(self, exc: SurfaceUnavailable) -> None:
        """Remember the error and count it; the first of an outage (or of another kind) goes
        to `errors`."""
        self.last_error = str(exc)
        code = "redis.auth_failed" if refused_credentials(exc) else "redis.unavailable"
        if code != self._outage_code:
            self._outage_code = code
            self.errors.append(
                ErrorEntry(ts=self._clock.now_ms(), code=code, message=str(exc)[:500])
            )
        if self._on_redis_error is not None:
            self._on_redis_error()

    def recovered(self) -> None:
        """The outage is over: the next error starts a new one."""
        self._outage_code = None

    def backoff_ms(self, failures: int) -> int:
        delay_s = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(failures - 1, 16))
        # Equal jitter: never less than half the delay, so a fleet does not reconnect in step.
        return int(1000 * delay_s * (0.5 + 0.5 * self._rng.random()))

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """Count and swallow a SurfaceUnavailable of a status write: a status writer must not
        die with Redis (the run loop degrades the surface and says so)."""
        try:
            yield
        except SurfaceUnavailable as exc:
            self.note(exc)
