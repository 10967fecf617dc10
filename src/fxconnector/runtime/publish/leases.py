"""One writer per symbol across the connector processes sharing a namespace (keys.py `lease`).

Rules:
- A lease is the string key `NS:lease:{SYMBOL}` holding the holder's identity, with an expiry
  (`ttl_ms`, default 15 s). The identity names the process for good: `HOST:WORKDIR` (one
  connector per workdir is enforced by the workdir lock), so a process restarted after a crash
  on the same workdir takes its own leases back at once, while any other process waits for
  their expiry.
- Take-or-extend is one atomic script per symbol: the key is set (with a fresh expiry) when it
  is missing or already ours, and left alone when another holder has it. There is no bare SET
  NX then PEXPIRE pair that a crash could split.
- At start (`acquire`) a symbol held by another live process is refused: SymbolLeased naming the
  symbol and the holder (`fxconnector run` exits 2). While running (`ensure`, every `ttl / 3`
  and after every Redis recovery) a lease that another process took (ours expired during an
  outage longer than the TTL and it started meanwhile) is *lost*: reported once, and the
  surface stops publishing that symbol for good. A lease that merely expired (nobody took it) is
  taken back silently.
- A clean stop releases (deletes) the leases still ours, in one atomic compare-and-delete each;
  a crash leaves them to expire within `ttl_ms`.
- Redis errors are SurfaceUnavailable (the surface retries); one script call per symbol, so in
  the cluster layout every call is single-slot and the pipeline groups them per node.

This module must not know what is published; time comes from the Clock.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from fxconnector.core.errors import SurfaceUnavailable, SymbolLeased
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.redis_connect import SurfaceClient
from fxconnector.runtime.publish.redis_errors import redis_errors

log = logging.getLogger(__name__)

LEASE_TTL_MS: Final = 15_000

#: KEYS[1] lease; ARGV[1] holder, ARGV[2] TTL ms. Takes or extends when free or ours; returns
#: the holder after the call (ARGV[1] when it is ours).
TAKE_LUA: Final = """
local held = redis.call('GET', KEYS[1])
if held == false or held == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return held
"""

#: KEYS[1] lease; ARGV[1] holder. Deletes it when ours.
RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class SymbolLeases:
    """The leases of one process's symbols."""

    def __init__(
        self,
        redis_client: SurfaceClient,
        keys: SurfaceKeys,
        holder: str,
        symbols: Sequence[str],
        *,
        clock: Clock,
        ttl_ms: int = LEASE_TTL_MS,
    ) -> None:
        self._redis = redis_client
        self._keys = keys
        self.holder = holder
        self.symbols = tuple(symbols)
        self._mine = frozenset(symbols)
        self._clock = clock
        self.ttl_ms = ttl_ms
        self._next_ms = 0
        #: symbol -> the holder that took it from us (we no longer publish it).
        self.lost: dict[str, str] = {}

    def holds(self, symbol: str) -> bool:
        """True for a symbol of this process not lost to another (a lost one never comes back)."""
        return symbol in self._mine and symbol not in self.lost

    def due(self, now_ms: int) -> bool:
        """True when the leases should be extended (every third of the TTL)."""
        return now_ms >= self._next_ms

    async def acquire(self) -> None:
        """Take every symbol's lease at start; SymbolLeased when another process holds one."""
        held = await self._take(self.symbols)
        others = {symbol: holder for symbol, holder in held.items() if holder != self.holder}
        if others:
            await self.release()  # the ones we did take: the process is not starting
            symbol, holder = sorted(others.items())[0]
            raise SymbolLeased(
                f"symbol {symbol} is published by another connector process ({holder}) in "
                f"namespace {self._keys.namespace!r}"
                + (f" (and {', '.join(sorted(others)[1:])})" if len(others) > 1 else "")
                + "; give each process its own broker.symbols, or stop that process (a crashed "
                f"one's lease expires within {self.ttl_ms // 1000} s)"
            )

    async def ensure(self) -> list[str]:
        """Take or extend every lease not lost; the symbols lost by this call (another process
        holds them now), each logged as an error."""
        symbols = [s for s in self.symbols if s not in self.lost]
        held = await self._take(symbols)
        newly = []
        for symbol, holder in held.items():
            if holder != self.holder:
                self.lost[symbol] = holder
                newly.append(symbol)
                log.error(
                    "surface.lease_lost",
                    extra={"fields": {"symbol": symbol, "holder": holder}},
                )
        return newly

    async def release(self) -> None:
        """Delete the leases still ours (a clean stop)."""
        if not self.symbols:
            return
        with redis_errors("release leases"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for symbol in self.symbols:
                    pipe.eval(RELEASE_LUA, 1, self._keys.lease(symbol), self.holder)
                await pipe.execute()

    async def release_quietly(self, within_s: float = 2.0) -> None:
        """`release`, bounded; a Redis that cannot be reached leaves them to expire."""
        try:
            await asyncio.wait_for(self.release(), within_s)
        except (SurfaceUnavailable, TimeoutError) as exc:
            log.warning("surface.lease_release_failed", extra={"fields": {"error": str(exc)}})

    async def _take(self, symbols: Sequence[str]) -> dict[str, str]:
        if not symbols:
            return {}
        with redis_errors("take leases"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for symbol in symbols:
                    pipe.eval(TAKE_LUA, 1, self._keys.lease(symbol), self.holder, self.ttl_ms)
                answers = await pipe.execute()
        self._next_ms = self._clock.now_ms() + self.ttl_ms // 3
        return {
            symbol: answer.decode() if isinstance(answer, bytes) else str(answer)
            for symbol, answer in zip(symbols, answers, strict=True)
        }


def lease_holder(workdir: Path) -> str:
    """This process's identity in a lease: `HOST:WORKDIR` (one connector per workdir)."""
    return f"{socket.gethostname()}:{workdir}"


async def take_leases(
    redis_client: SurfaceClient,
    keys: SurfaceKeys,
    workdir: Path,
    symbols: Sequence[str],
    clock: Clock,
) -> SymbolLeases:
    """The process's leases, taken at start: SymbolLeased when another process holds one. A
    Redis that cannot be reached now is no reason not to start (Redis is a surface): the
    surface takes them before it publishes anything, once Redis answers."""
    leases = SymbolLeases(redis_client, keys, lease_holder(workdir), symbols, clock=clock)
    try:
        await leases.acquire()
    except SurfaceUnavailable as exc:
        log.warning("surface.leases_deferred", extra={"fields": {"error": str(exc)}})
    return leases
