"""fx_ny against a year of real FXCM bars: the broker trades only when the calendar is open."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.time_geom import iso_utc


def bar_open_times(path: Path) -> np.ndarray[tuple[int], np.dtype[np.int64]]:
    with zipfile.ZipFile(path) as archive:
        (member,) = archive.namelist()
        text = archive.read(member).decode()
    stamps = np.loadtxt(io.StringIO(text), dtype="U25", delimiter=",", skiprows=1, usecols=0)
    seconds = np.array([s[:19] for s in stamps], dtype="datetime64[s]").astype(np.int64)
    assert all(s.endswith("+00:00") for s in stamps[:10])
    return seconds * 1000


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("fxcm-gbpusd-m1-bid-2012.csv.zip", 368_621),
        ("fxcm-gbpusd-m1-ask-2012.csv.zip", 368_621),
        ("fxcm-usdjpy-m1-bid-2013.csv.zip", 366_456),
        ("fxcm-usdjpy-m1-ask-2013.csv.zip", 366_456),
    ],
)
def test_every_fxcm_bar_falls_in_an_open_minute(
    name: str,
    rows: int,
    shared_data: Path,
    fx_ny: CalendarProfile,
    capsys: pytest.CaptureFixture[str],
) -> None:
    times = bar_open_times(shared_data / "fxcm" / name)
    assert times.size == rows
    cal = fx_ny.default
    closed = times[~cal.is_open_array(times)]
    holidays = fx_ny.spec.closed_intervals
    in_holiday = [int(t) for t in closed if any(h.start_ms <= t < h.end_ms for h in holidays)]
    outside = [int(t) for t in closed if int(t) not in set(in_holiday)]
    with capsys.disabled():
        print(
            f"\n{name}: {rows} bars, {len(in_holiday)} inside listed holidays: "
            f"{[iso_utc(t) for t in in_holiday[:10]]}"
        )
    assert not outside, (
        f"bars in closed minutes outside holidays: {[iso_utc(t) for t in outside[:20]]}"
    )
