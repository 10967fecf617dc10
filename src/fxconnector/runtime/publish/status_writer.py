"""Writing one process's status to Redis (key names in keys.py): summary, per-symbol details.

Rules:
- Each process writes its own summary to `NS:status:proc:ID` (ID = the status `process.id`,
  `HOSTNAME:PID`, see `this_process_id`) and each of its symbols' details to
  `NS:status:sym:SYMBOL`, all with the same expiry (a few status periods), so a dead process's
  status disappears instead of going stale. Nothing a process writes is overwritten by another
  process of the namespace, except a symbol's detail when two processes serve one symbol (the
  detail names its `process_id`).
- The namespace's live processes are the members of the sorted set `NS:status:procs` (score:
  the ms of their last status write); members older than the expiry are removed by the writers.
- `NS:status`, the key a single-process user reads, is written too while the writer is the only
  live process of the namespace, so the single-process default is as simple as ever. With two or
  more, the writers delete it: it never holds one process's summary while another runs, and
  readers list the processes (`SurfaceReader.status_processes`, `/api/status/processes`).
  A process is seen as gone one expiry after its last write (host clocks are assumed to agree
  to well under that, as NTP keeps them).
- Every write is one pipelined round trip (no transaction: the keys may live in different
  cluster slots), plus a second: the SET (alone) or DEL (not alone) of `NS:status`. Redis
  errors propagate to the caller (RedisSurface translates and counts them); this module holds
  no state.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.redis_connect import SurfaceClient

_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_.-]")


def process_id(hostname: str, pid: int) -> str:
    """`HOSTNAME:PID`, the host name reduced to `[A-Za-z0-9_.-]` (at most 180 characters)."""
    host = _NOT_IN_ID.sub("_", hostname)[:180] or "host"
    return f"{host}:{pid}"


def this_process_id(pid: int) -> str:
    """This process's id: stable for its life (a pid is not reused while it runs) and unique
    across machines as long as their host names differ (containers: their own host names)."""
    return process_id(socket.gethostname(), pid)


@dataclass(frozen=True, slots=True)
class StatusPayloads:
    """One status write: the summary (`status_v2`) and every symbol's detail
    (`status_symbol_v1`), encoded."""

    process_id: str
    summary: bytes
    symbols: Mapping[str, bytes]


async def write_status(
    client: SurfaceClient,
    keys: SurfaceKeys,
    payloads: StatusPayloads,
    *,
    ttl_s: int,
    now_ms: int,
) -> bool:
    """Write `payloads` with an expiry of `ttl_s`; True when `NS:status` was written too (the
    writer is the namespace's only live process)."""
    procs = keys.status_processes
    pipe = client.pipeline(transaction=False)
    pipe.set(keys.status_process(payloads.process_id), payloads.summary, ex=ttl_s)
    for symbol, detail in payloads.symbols.items():
        pipe.set(keys.status_symbol(symbol), detail, ex=ttl_s)
    pipe.zadd(procs, {payloads.process_id: now_ms})
    pipe.zremrangebyscore(procs, "-inf", f"({now_ms - ttl_s * 1000}")
    pipe.expire(procs, ttl_s)
    pipe.zcard(procs)
    replies = await pipe.execute()
    if int(replies[-1]) != 1:
        await client.delete(keys.status)
        return False
    await client.set(keys.status, payloads.summary, ex=ttl_s)
    return True
