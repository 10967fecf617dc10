"""Where the benchmarks find the real data (../shared/data, or FXCONNECTOR_SHARED_DATA)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path | None:
    path = Path(os.environ.get("FXCONNECTOR_SHARED_DATA", REPO.parent / "shared" / "data"))
    return path if (path / "README.md").is_file() else None


def fxcm_year(path: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Open times (ms) and OHLC columns of one FXCM 1m zip."""
    with zipfile.ZipFile(path) as archive:
        (member,) = archive.namelist()
        text = archive.read(member).decode()
    rows = np.loadtxt(io.StringIO(text), dtype="U25", delimiter=",", skiprows=1)
    opens = np.array([s[:19] for s in rows[:, 0]], dtype="datetime64[s]").astype(np.int64) * 1000
    return opens, rows[:, 1:5].astype(np.float64)
