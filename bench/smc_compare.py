"""Our causal SMC engine against `smartmoneyconcepts` 0.0.27 on the same real bars.

    python -m bench.smc_compare [--bars 3000] [--prefixes 60]

Prints the markdown table of docs/smc.md: per series, what agrees (swings, FVGs, FVG mitigation,
BOS/CHoCH at their breaking bar), what only one side finds, and the prefix-replay rewrite count of
each: the engine (or the package) is run over bars[0:n] for the last `--prefixes` values of n,
and every reading of a bar it had already returned at n-1 that is changed or erased at n counts
as one rewrite. Readings of the package: swing HighLow/Level, FVG FVG/Top/Bottom, BOS, CHOCH,
Level, OB/Top/Bottom, Liquidity/Level. Ours: the hint lines (a run's lines at n-1 must be the
first lines at n). Nothing here is asserted; the figures are what the data gives.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.data import shared_data
from bench.smc_series import dukascopy_hours, fxcm_minutes
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.smc import Direction, SmcHint, SmcKind
from fxconnector.smc import SmcConfig, SmcEngine, encode_hint

SWING_LENGTH = 5


def quiet_import() -> Any:
    """The package prints a banner on import; keep stdout for the table."""
    with contextlib.redirect_stdout(io.StringIO()):
        from smartmoneyconcepts import smc
    return smc


def frame(bars: Sequence[OhlcvEvent]) -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            # FXCM files carry no volume; the package's `ob` needs the column.
            "volume": [float(b.volume) or 1.0 for b in bars],
        }
    )


def ours(bars: Sequence[OhlcvEvent]) -> list[SmcHint]:
    engine = SmcEngine(bars[0].symbol, bars[0].tf, SmcConfig(swing_length=SWING_LENGTH))
    return [h for bar in bars for h in engine.update(bar)]


def theirs(smc: Any, bars: Sequence[OhlcvEvent]) -> dict[str, Any]:
    df = frame(bars)
    swings = smc.swing_highs_lows(df, swing_length=SWING_LENGTH)
    return {
        "swings": swings,
        "fvg": smc.fvg(df),
        "bos": smc.bos_choch(df, swings, close_break=True),
        "ob": smc.ob(df, swings),
        "liquidity": smc.liquidity(df, swings),
    }


def sign(direction: Direction) -> int:
    return 1 if direction is Direction.BULL else -1


@dataclass(frozen=True, slots=True)
class Agreement:
    what: str
    theirs: int
    ours: int
    both: int

    def cells(self) -> str:
        return f"{self.theirs} | {self.ours} | {self.both}"


def agreements(
    bars: Sequence[OhlcvEvent], hints: list[SmcHint], got: dict[str, Any]
) -> list[Agreement]:
    index = {b.open_ms: i for i, b in enumerate(bars)}
    closes = {b.close_ms: i for i, b in enumerate(bars)}
    n = len(bars)
    out: list[Agreement] = []
    # swings: the package marks bar i; its first and last rows are forced labels, left out.
    labels = got["swings"]["HighLow"].to_numpy()
    their_swings = {
        (i, int(v)) for i, v in enumerate(labels) if not math.isnan(v) and 0 < i < n - 1
    }
    our_swings = {
        (index[h.anchor_ts], 1 if h.kind is SmcKind.SWING_HIGH else -1)
        for h in hints
        if h.kind in (SmcKind.SWING_HIGH, SmcKind.SWING_LOW)
    }
    out.append(
        Agreement(
            "swings (bar, side)", len(their_swings), len(our_swings), len(their_swings & our_swings)
        )
    )
    fvg = got["fvg"]
    their_gaps = {
        (i, int(fvg["FVG"][i]), round(float(fvg["Top"][i]), 6), round(float(fvg["Bottom"][i]), 6))
        for i in range(n)
        if not math.isnan(fvg["FVG"][i])
    }
    our_gap_hints = [h for h in hints if h.kind is SmcKind.FVG]
    our_gaps = {
        (index[h.anchor_ts], sign(h.direction), round(h.top or 0, 6), round(h.bottom or 0, 6))
        for h in our_gap_hints
    }
    out.append(
        Agreement(
            "FVG (bar, side, top, bottom)",
            len(their_gaps),
            len(our_gaps),
            len(their_gaps & our_gaps),
        )
    )
    # mitigation of the gaps both find: their near-edge rule against our far-edge rule
    mitigated = {
        h.anchor_ts: closes[h.confirm_ts] for h in hints if h.kind is SmcKind.FVG_MITIGATED
    }
    common = {g[0] for g in their_gaps & our_gaps}
    their_mit = {i: int(fvg["MitigatedIndex"][i]) for i in common if fvg["MitigatedIndex"][i] > 0}
    our_mit = {i: mitigated[bars[i].open_ms] for i in common if bars[i].open_ms in mitigated}
    same_mit = sum(1 for i, j in their_mit.items() if our_mit.get(i) == j)
    out.append(
        Agreement("FVG mitigation bar (common gaps)", len(their_mit), len(our_mit), same_mit)
    )
    bos = got["bos"]
    their_breaks: set[tuple[int, int, str, float]] = set()
    for i in range(n):
        for column, kind in (("BOS", "bos"), ("CHOCH", "choch")):
            value = bos[column][i]
            if not math.isnan(value) and not math.isnan(bos["BrokenIndex"][i]):
                their_breaks.add(
                    (int(bos["BrokenIndex"][i]), int(value), kind, round(float(bos["Level"][i]), 5))
                )
    our_breaks = {
        (closes[h.confirm_ts], sign(h.direction), h.kind.value, round(h.price or 0, 5))
        for h in hints
        if h.kind in (SmcKind.BOS, SmcKind.CHOCH)
    }

    def at(found: set[tuple[int, int, str, float]]) -> set[tuple[int, int, float]]:
        return {(bar, side, level) for bar, side, _, level in found}

    out.append(
        Agreement(
            "breaks (bar, side, level)",
            len(their_breaks),
            len(our_breaks),
            len(at(their_breaks) & at(our_breaks)),
        )
    )
    out.append(
        Agreement(
            "breaks incl. BOS/CHoCH label",
            len(their_breaks),
            len(our_breaks),
            len(their_breaks & our_breaks),
        )
    )
    return out


READINGS = {
    "swings": ("HighLow", "Level"),
    "fvg": ("FVG", "Top", "Bottom"),
    "bos": ("BOS", "CHOCH", "Level"),
    "ob": ("OB", "Top", "Bottom"),
    "liquidity": ("Liquidity", "Level"),
}


def their_rewrites(
    smc: Any, bars: Sequence[OhlcvEvent], prefixes: int
) -> tuple[int, int, dict[str, int]]:
    """(rewritten readings, prefixes with one or more, per function) over the last prefixes."""
    total = 0
    touched = 0
    per: dict[str, int] = dict.fromkeys(READINGS, 0)
    start = len(bars) - prefixes + 1
    previous = theirs(smc, bars[: start - 1])
    for n in range(start, len(bars) + 1):
        current = theirs(smc, bars[:n])
        step = 0
        for name, columns in READINGS.items():
            for column in columns:
                before = previous[name][column].to_numpy(dtype=float)
                after = current[name][column].to_numpy(dtype=float)[: before.size]
                was = ~np.isnan(before)
                changed = was & ((np.isnan(after)) | (after != before))
                count = int(changed.sum())
                per[name] += count
                step += count
        total += step
        touched += step > 0
        previous = current
    return total, touched, per


def our_rewrites(bars: Sequence[OhlcvEvent], prefixes: int) -> tuple[int, int]:
    total = 0
    touched = 0
    start = len(bars) - prefixes + 1
    previous = [encode_hint(h) for h in ours(bars[: start - 1])]
    for n in range(start, len(bars) + 1):
        current = [encode_hint(h) for h in ours(bars[:n])]
        step = sum(1 for a, b in zip(previous, current, strict=False) if a != b)
        step += max(0, len(previous) - len(current))
        total += step
        touched += step > 0
        previous = current
    return total, touched


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bars", type=int, default=3000, help="bars per 1m series")
    parser.add_argument("--prefixes", type=int, default=60, help="prefix lengths replayed")
    args = parser.parse_args(argv)
    shared = shared_data()
    if shared is None:
        print(
            "no ../shared/data (set FXCONNECTOR_SHARED_DATA): nothing to compare", file=sys.stderr
        )
        return 2
    smc = quiet_import()
    series = {
        f"FXCM GBPUSD 1m 2012 ({args.bars} bars from Jul)": fxcm_minutes(shared, "gbpusd", 2012)[
            200_000 : 200_000 + args.bars
        ],
        f"FXCM USDJPY 1m 2013 ({args.bars} bars from Jan)": fxcm_minutes(shared, "usdjpy", 2013)[
            : args.bars
        ],
        "Dukascopy EURUSD 1h Feb 2019": dukascopy_hours(shared),
    }
    print(f"swing_length {SWING_LENGTH}; counts: theirs | ours | both\n")
    print("| series | what | theirs | ours | both |")
    print("|---|---|---:|---:|---:|")
    rewrites = []
    for name, bars in series.items():
        hints = ours(bars)
        for row in agreements(bars, hints, theirs(smc, bars)):
            print(f"| {name} | {row.what} | {row.cells()} |")
        their_total, their_touched, per = their_rewrites(smc, bars, args.prefixes)
        our_total, our_touched = our_rewrites(bars, args.prefixes)
        rewrites.append((name, their_total, their_touched, per, our_total, our_touched))
    print(f"\nPrefix replay, last {args.prefixes} prefixes of each series:\n")
    print("| series | smartmoneyconcepts rewrites (prefixes hit) | by function | ours (hit) |")
    print("|---|---:|---|---:|")
    for name, total, touched, per, our_total, our_touched in rewrites:
        detail = ", ".join(f"{k} {v}" for k, v in per.items() if v)
        print(f"| {name} | {total} ({touched}) | {detail or '-'} | {our_total} ({our_touched}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
