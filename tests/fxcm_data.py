"""Reading the FXCM 1m CSV years of ../shared/data as final 1m events (test helper)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import Timeframe


def fxcm_finals(path: Path, symbol: str) -> list[OhlcvEvent]:
    """Every bar of one FXCM zip as a final 1m event (FXCM gives no volume: 0)."""
    with zipfile.ZipFile(path) as archive:
        (member,) = archive.namelist()
        text = archive.read(member).decode()
    rows = np.loadtxt(io.StringIO(text), dtype="U25", delimiter=",", skiprows=1)
    opens = np.array([s[:19] for s in rows[:, 0]], dtype="datetime64[s]").astype(np.int64) * 1000
    prices = rows[:, 1:5].astype(np.float64)
    return [
        OhlcvEvent(
            symbol,
            Timeframe.M1,
            int(o),
            int(o) + 59_999,
            float(p[0]),
            float(p[1]),
            float(p[2]),
            float(p[3]),
            0,
            0,
            True,
            Source.HISTORY,
            int(o) + 59_999,
            0,
        )
        for o, p in zip(opens, prices, strict=True)
    ]
