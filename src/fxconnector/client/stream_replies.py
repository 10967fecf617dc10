"""The Redis replies the consumer reads (XINFO STREAM, XREAD, a pipeline's), parsed and mapped.

Rules: a lost connection, a server still loading, a cluster failing over or moving slots are
transient (SurfaceUnavailable: the consumer retries them); refused credentials or ACLs are a
ConfigError; anything else in a reply is the surface's fault (ContractViolation), never
retried. Replies are read whether the client decodes responses or not, RESP2 or RESP3. It knows
nothing of the key layout (`runtime.publish.keys`): the consumer names the keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from redis import exceptions as redis_errors
from redis.asyncio.client import Pipeline

from fxconnector.core.errors import ConfigError, ContractViolation, SurfaceUnavailable


@dataclass(frozen=True, slots=True, order=True)
class StreamId:
    """A Redis stream entry id `ms-seq`, ordered as Redis orders them."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, raw: str | bytes) -> StreamId:
        text = raw.decode() if isinstance(raw, bytes) else raw
        ms, dash, seq = text.partition("-")
        if not (dash and ms.isdigit() and seq.isdigit()):
            raise ContractViolation(f"not a stream id: {text!r}")
        return cls(int(ms), int(seq))

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


ZERO: Final = StreamId(0, 0)


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What XINFO STREAM says of a stream (what the resync checks need)."""

    last_id: StreamId
    first_id: StreamId | None
    length: int
    entries_added: int | None  # Redis >= 7 only


#: Errors that pass: a lost connection, a server still loading, a cluster failing over or
#: moving slots. Everything else in a reply is the surface's fault and is not retried.
_TRANSIENT = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterError,
    redis_errors.TryAgainError,
    redis_errors.AskError,
)


def _transient(reply: Any) -> bool:
    return isinstance(reply, _TRANSIENT)


def stream_info(stream: str, reply: Any) -> StreamInfo | None:
    """What an XINFO STREAM reply says of `stream`; None when there is no such stream."""
    if _transient(reply):
        raise SurfaceUnavailable(f"XINFO STREAM {stream}: {reply}") from reply
    if isinstance(reply, redis_errors.ResponseError):
        if "no such key" in str(reply).lower():
            return None
        raise ContractViolation(f"XINFO STREAM {stream}: {reply}") from reply
    if not isinstance(reply, dict):
        raise ContractViolation(f"XINFO STREAM {stream}: unexpected {reply!r}")
    first = reply.get("first-entry")
    added = reply.get("entries-added")
    return StreamInfo(
        last_id=StreamId.parse(reply["last-generated-id"]),
        first_id=StreamId.parse(first[0]) if first else None,
        length=int(reply["length"]),
        entries_added=int(added) if added is not None else None,
    )


async def execute(pipe: Pipeline) -> list[Any]:
    """Run a pipeline, mapping library errors to ours (replies keep per-command errors)."""
    try:
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    except (redis_errors.AuthenticationError, redis_errors.AuthorizationError) as exc:
        raise ConfigError(f"Redis refused the client's credentials: {exc}") from exc
    except (*_TRANSIENT, redis_errors.RedisClusterException) as exc:
        raise SurfaceUnavailable(f"Redis unavailable: {exc}") from exc
    for reply in replies:
        if isinstance(reply, redis_errors.NoPermissionError):
            raise ConfigError(f"Redis ACL refuses a read the consumer needs: {reply}")
        if _transient(reply):
            # e.g. LOADING while a restarted server reads its dataset, or CLUSTERDOWN while
            # a cluster fails a master over.
            raise SurfaceUnavailable(f"Redis unavailable: {reply}") from reply
    return replies


def reply_field(fields: dict[Any, Any], name: str) -> Any:
    """A hash or entry field, whether the client decodes responses or not."""
    value = fields.get(name.encode())
    return fields.get(name) if value is None else value


def xread_entries(reply: Any) -> list[tuple[Any, Any]]:
    """The entries of a one-stream XREAD reply, in any shape redis-py gives it.

    RESP2: `[[name, [(id, fields), ...]]]`; RESP3: `{name: [(id, fields), ...]}`, and with
    legacy responses `{name: [[(id, fields), ...]]}`.
    """
    if not reply:
        return []
    groups = list(reply.values()) if isinstance(reply, dict) else [item[1] for item in reply]
    entries: list[tuple[Any, Any]] = []
    for group in groups:
        if group and isinstance(group[0], list) and group[0] and isinstance(group[0][0], tuple):
            group = group[0]
        entries.extend((entry[0], entry[1]) for entry in group)
    return entries
