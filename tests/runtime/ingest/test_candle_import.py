"""Candle import a week at a time equals one piece: the same store, byte for byte, across the
US DST switch of 2012-03-11 (the trading-day boundary moves from 22:00 to 21:00 UTC)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.time_geom import TIMEFRAMES, to_ms
from fxconnector.runtime.ingest import candle_import
from fxconnector.runtime.ingest.broker.replay.candles import read_candles
from fxconnector.runtime.store.ssot_jsonl import JsonlStore

FROM_MS = to_ms(dt.datetime(2012, 3, 1, tzinfo=dt.UTC))
TO_MS = to_ms(dt.datetime(2012, 3, 24, tzinfo=dt.UTC))


def import_into(root: Path, path: Path, fx_ny: CalendarProfile) -> candle_import.ImportResult:
    candles = read_candles(path, "GBPUSD", from_ms=FROM_MS, to_ms=TO_MS)
    store = JsonlStore(root)
    store.open()
    try:
        return asyncio.run(
            candle_import.import_candles(
                "GBPUSD",
                candles.bars,
                calendar=fx_ny.for_symbol("GBPUSD"),
                timeframes=TIMEFRAMES,
                spec=BarSpec(),
                store=store,
                now_ms=TO_MS,
                from_ms=FROM_MS,
                to_ms=TO_MS,
            )
        )
    finally:
        store.close()


def files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*.jsonl"))
    }


@pytest.mark.slow
def test_weekly_pieces_store_what_one_piece_stores(
    shared_data: Path, tmp_path: Path, fx_ny: CalendarProfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = shared_data / "fxcm" / "fxcm-gbpusd-m1-bid-2012.csv.zip"
    weekly = import_into(tmp_path / "weekly", source, fx_ny)
    monkeypatch.setattr(candle_import, "PIECE_DAYS", 10_000)
    whole = import_into(tmp_path / "whole", source, fx_ny)
    assert weekly.finals == whole.finals
    assert weekly.finals["1d"] >= 15
    assert weekly.revisions == whole.revisions == {}
    assert files(tmp_path / "weekly") == files(tmp_path / "whole")
