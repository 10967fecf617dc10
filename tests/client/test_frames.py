"""Bars as Arrow, pandas and polars tables: types, order, and the error when a library is
missing."""

from __future__ import annotations

import sys

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from fxconnector.client.frames import BAR_SCHEMA, BarWindow, bars_to_arrow
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import Timeframe

T0 = 1_549_238_400_000  # 2019-02-04 00:00 UTC


def bar(k: int, *, complete: bool = True, volume: float = 112) -> OhlcvEvent:
    open_ms = T0 + k * 60_000
    return OhlcvEvent(
        symbol="EURUSD",
        tf=Timeframe.M1,
        open_ms=open_ms,
        close_ms=open_ms + 59_999,
        open=1.14567,
        high=1.14572,
        low=1.1456,
        close=1.14561,
        volume=volume,
        tick_count=112,
        complete=complete,
        source=Source.HISTORY if complete else Source.STREAM,
        event_ts=open_ms + (59_999 if complete else 1_234),
        rev=0,
    )


def test_the_arrow_table_has_the_contracts_columns_and_types() -> None:
    table = bars_to_arrow([bar(0), bar(1, volume=2.5), bar(2, complete=False)])
    assert table.schema.equals(BAR_SCHEMA)
    assert table.schema.names == list(OhlcvEvent.__struct_fields__)
    assert table.schema.field("open_ms").type == pa.timestamp("ms", tz="UTC")
    assert table.column("volume").to_pylist() == [112.0, 2.5, 112.0]
    assert table.column("source").to_pylist() == ["history", "history", "stream"]
    assert bars_to_arrow([]).num_rows == 0


def test_pandas_and_polars_frames_are_utc_and_in_order() -> None:
    window = BarWindow("EURUSD", Timeframe.M1, (bar(0), bar(1), bar(2, complete=False)))
    assert window.finals == (bar(0), bar(1))
    frame = window.to_pandas()
    assert frame["open_ms"].tolist() == [
        pd.Timestamp(T0 + k * 60_000, unit="ms", tz="UTC") for k in range(3)
    ]
    assert frame["event_ts"].iloc[2] == pd.Timestamp(T0 + 121_234, unit="ms", tz="UTC")
    assert frame["complete"].tolist() == [True, True, False]
    polars_frame = window.to_polars()
    assert polars_frame.schema["close_ms"] == pl.Datetime("ms", "UTC")
    assert polars_frame["tick_count"].dtype == pl.Int64


@pytest.mark.parametrize(("module", "method"), [("pandas", "to_pandas"), ("polars", "to_polars")])
def test_a_missing_library_is_a_clear_import_error(
    monkeypatch: pytest.MonkeyPatch, module: str, method: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    window = BarWindow("EURUSD", Timeframe.M1, (bar(0),))
    with pytest.raises(ImportError, match=f"{module} is not installed: `pip install {module}`"):
        getattr(window, method)()
