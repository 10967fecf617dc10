"""Final bars written as Parquet, CSV or JSON lines: one shape for `export` and `bars`.

CSV and Parquet have the columns of `client.frames.BAR_SCHEMA` (the contract's fields; `open_ms`,
`close_ms` and `event_ts` as UTC timestamps); JSON lines are the canonical `ohlcv_event_v1`
events. Bars go in batches, so memory does not grow with the range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Final

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fxconnector.client.frames import BAR_SCHEMA, bars_to_arrow
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.utils.json_codec import encode

FORMATS: Final = ("parquet", "csv", "jsonl")
BATCH_BARS: Final = 50_000


def write_bars(
    fmt: str,
    sink: IO[bytes],
    bars: Iterable[OhlcvEvent],
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write `bars` to `sink` in `fmt` (one of FORMATS); the number of rows. A CSV of no bars
    still has its header. `progress(rows, 0)` is told after each batch."""
    rows = 0
    if fmt == "jsonl":
        for batch in _batches(bars):
            _write_all(sink, b"".join(encode(b).rstrip(b"\n") + b"\n" for b in batch))
            rows += len(batch)
            if progress is not None:
                progress(rows, 0)
        return rows
    writer: Any = (
        pq.ParquetWriter(sink, BAR_SCHEMA)
        if fmt == "parquet"
        else pa_csv.CSVWriter(sink, BAR_SCHEMA)
    )
    with writer:
        for batch in _batches(bars):
            writer.write_table(bars_to_arrow(batch))
            rows += len(batch)
            if progress is not None:
                progress(rows, 0)
        if rows == 0 and fmt == "csv":
            writer.write_table(pa.table({f.name: [] for f in BAR_SCHEMA}, schema=BAR_SCHEMA))
    return rows


def _batches(bars: Iterable[OhlcvEvent]) -> Iterator[list[OhlcvEvent]]:
    batch: list[OhlcvEvent] = []
    for bar in bars:
        batch.append(bar)
        if len(batch) >= BATCH_BARS:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_all(sink: IO[bytes], data: bytes) -> None:
    """All of `data`: a buffered pipe reports a reader that went away mid-write as a short
    count, and raises (BrokenPipeError) only on the next write."""
    view = memoryview(data)
    while view:
        written = sink.write(view)
        if not written:
            raise OSError(f"the output took none of {len(view)} bytes")
        view = view[written:]
