"""Bars as columns: one Arrow table layout for `BarWindow.to_pandas/to_polars` and the export.

Rules: the columns are the contract's fields in the contract's order (`ohlcv_event_v1`), with
their names unchanged; the three times (`open_ms`, `close_ms`, `event_ts`) are Arrow
`timestamp[ms, tz=UTC]` (pandas `datetime64[ms, UTC]`, polars `Datetime("ms", "UTC")`), prices
and `volume` float64, `tick_count` and `rev` int64, `complete` bool, `symbol`, `tf` and `source`
strings. pyarrow is a runtime dependency; pandas and polars are optional and a missing one is
a clear ImportError naming what to install. Pure apart from building the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import Timeframe

if TYPE_CHECKING:  # pragma: no cover - types only
    import pandas
    import polars

UTC_MS = pa.timestamp("ms", tz="UTC")

#: The Arrow schema of bars: the contract's fields in its order.
BAR_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("tf", pa.string(), nullable=False),
        pa.field("open_ms", UTC_MS, nullable=False),
        pa.field("close_ms", UTC_MS, nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
        pa.field("tick_count", pa.int64(), nullable=False),
        pa.field("complete", pa.bool_(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("event_ts", UTC_MS, nullable=False),
        pa.field("rev", pa.int64(), nullable=False),
    ]
)


def bars_to_arrow(bars: Sequence[OhlcvEvent]) -> pa.Table:
    """The bars as one Arrow table of BAR_SCHEMA, in the given order."""
    columns: dict[str, list[Any]] = {name: [] for name in BAR_SCHEMA.names}
    for bar in bars:
        columns["symbol"].append(bar.symbol)
        columns["tf"].append(bar.tf.value)
        columns["open_ms"].append(bar.open_ms)
        columns["close_ms"].append(bar.close_ms)
        columns["open"].append(bar.open)
        columns["high"].append(bar.high)
        columns["low"].append(bar.low)
        columns["close"].append(bar.close)
        columns["volume"].append(float(bar.volume))
        columns["tick_count"].append(bar.tick_count)
        columns["complete"].append(bar.complete)
        columns["source"].append(bar.source.value)
        columns["event_ts"].append(bar.event_ts)
        columns["rev"].append(bar.rev)
    # Integers into a timestamp column are taken as the unit's count: epoch ms here.
    return pa.table(
        [pa.array(columns[field.name], type=field.type) for field in BAR_SCHEMA],
        schema=BAR_SCHEMA,
    )


def _optional(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(
            f"{module} is not installed: `pip install {module}` to get bars as a {module} "
            "DataFrame (it is an optional dependency of fxconnector)"
        ) from None


@dataclass(frozen=True, slots=True)
class BarWindow:
    """Bars of one series, ascending open_ms: finals, then at most one preview at the end."""

    symbol: str
    tf: Timeframe
    bars: tuple[OhlcvEvent, ...]
    cursor: str | None = None  # the stream cursor the finals reflect (from /api/bars)

    @property
    def finals(self) -> tuple[OhlcvEvent, ...]:
        return tuple(bar for bar in self.bars if bar.complete)

    def to_arrow(self) -> pa.Table:
        return bars_to_arrow(self.bars)

    def to_pandas(self) -> pandas.DataFrame:
        """A pandas DataFrame (BAR_SCHEMA's columns; times are tz-aware UTC)."""
        _optional("pandas")
        frame: pandas.DataFrame = self.to_arrow().to_pandas()
        return frame

    def to_polars(self) -> polars.DataFrame:
        """A polars DataFrame (BAR_SCHEMA's columns; times are `Datetime("ms", "UTC")`)."""
        pl = _optional("polars")
        frame: polars.DataFrame = pl.from_arrow(self.to_arrow())
        return frame
