"""The Python client of the public surface: what later layers (SMC, execution) read bars with.

Rules: it reads only the documented Redis layout (`runtime.publish.keys`), the public HTTP API
and the public contract (`core`); it never writes to Redis. `merge` is the pure policy,
`consumer` the Redis reader (`stream_replies` parses what Redis answers it), `backoff` the
readers' reconnect delays, `http` the HTTP/SSE reader, `frames` bars as Arrow/pandas/polars
tables, `execution` submits intents to `fxconnector exec` over its control socket (never Redis).
"""

from fxconnector.client.backoff import Backoff
from fxconnector.client.consumer import ConsumerStats, SurfaceConsumer, SurfaceKeys
from fxconnector.client.execution import (
    ExecClient,
    ExecRequestError,
    ExecUnavailable,
    order_status,
    submit_intent,
)
from fxconnector.client.frames import BarWindow
from fxconnector.client.http import HttpClient, HttpClientStats, fetch_bars
from fxconnector.client.merge import BarBook, Change, ChangeKind, IgnoreReason
from fxconnector.client.stream_replies import StreamId

__all__ = [
    "Backoff",
    "BarBook",
    "BarWindow",
    "Change",
    "ChangeKind",
    "ConsumerStats",
    "ExecClient",
    "ExecRequestError",
    "ExecUnavailable",
    "HttpClient",
    "HttpClientStats",
    "IgnoreReason",
    "StreamId",
    "SurfaceConsumer",
    "SurfaceKeys",
    "fetch_bars",
    "order_status",
    "submit_intent",
]
