"""bench/smc_compare.py on a short real series: the package rewrites, our engine never does."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.smc_compare import agreements, our_rewrites, ours, quiet_import, their_rewrites, theirs
from bench.smc_series import fxcm_minutes


def test_rewrites_and_agreement_on_real_minutes(shared_data: Path) -> None:
    pytest.importorskip("smartmoneyconcepts", reason="the bench extra is not installed")
    smc = quiet_import()
    bars = fxcm_minutes(shared_data, "usdjpy", 2013)[:400]
    total, touched, per = their_rewrites(smc, bars, 5)
    assert per["swings"] == 2 * 5  # its forced last-row label, erased by every new bar
    assert total >= per["swings"]
    assert touched == 5
    assert our_rewrites(bars, 5) == (0, 0)
    rows = {row.what: row for row in agreements(bars, ours(bars), theirs(smc, bars))}
    gaps = rows["FVG (bar, side, top, bottom)"]
    assert gaps.both == gaps.theirs
    assert gaps.ours >= gaps.both
    swings = rows["swings (bar, side)"]
    assert 0 < swings.both <= min(swings.theirs, swings.ours)
