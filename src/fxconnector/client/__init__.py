"""The Python client of the public surface: what later layers (SMC, execution) read bars with.

Rules: it reads only the documented Redis layout (`runtime.publish.keys`) and the public
contract (`core`); it never writes to Redis. `merge` is the pure policy, `consumer` the I/O.
`execution` submits intents to `fxconnector exec` over its control socket (never Redis).
"""

from fxconnector.client.consumer import Backoff, ConsumerStats, StreamId, SurfaceConsumer
from fxconnector.client.execution import (
    ExecClient,
    ExecRequestError,
    ExecUnavailable,
    order_status,
    submit_intent,
)
from fxconnector.client.merge import BarBook, Change, ChangeKind, IgnoreReason

__all__ = [
    "Backoff",
    "BarBook",
    "Change",
    "ChangeKind",
    "ConsumerStats",
    "ExecClient",
    "ExecRequestError",
    "ExecUnavailable",
    "IgnoreReason",
    "StreamId",
    "SurfaceConsumer",
    "order_status",
    "submit_intent",
]
