"""Memory of an opened JSONL store holding 10 symbol-years (issue 11 point 5).

`python -m bench.store_rss [--old REV]` writes the FXCM GBPUSD 2012 year of 1m finals under 10
symbol names (3.7M bars) into a temporary store, then opens it in a fresh process and reports
its resident memory (VmRSS) before open, after open, after the tail cache is rebuilt and after a
whole symbol-year is read through `bars()`. With `--old REV` the same is measured for the
store module as it was at git revision REV, for comparison.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_stall import _bar
from bench.data import REPO, fxcm_year, shared_data
from fxconnector.config.calendars import load_calendar
from fxconnector.core.time_geom import Timeframe, to_ms
from fxconnector.runtime.store.cache_tail import TailCache
from fxconnector.runtime.store.ssot_jsonl import JsonlStore

SYMBOLS = (
    "GBPUSD",
    "EURUSD",
    "USDJPY",
    "AUDUSD",
    "USDCAD",
    "USDCHF",
    "NZDUSD",
    "EURGBP",
    "EURJPY",
    "GBPJPY",
)
TAIL_WINDOW = 2_000


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build(root: Path) -> int:
    data = shared_data()
    if data is None:
        raise SystemExit("../shared/data not found; set FXCONNECTOR_SHARED_DATA")
    calendar = load_calendar("fx_ny", now_ms=to_ms(dt.datetime(2012, 1, 1, tzinfo=dt.UTC))).default
    opens, ohlc = fxcm_year(data / "fxcm" / "fxcm-gbpusd-m1-bid-2012.csv.zip")
    store = JsonlStore(root)
    store.open()
    total = 0
    for symbol in SYMBOLS:
        bars = [
            bar
            for bar in (_bar(symbol, int(o), row) for o, row in zip(opens, ohlc, strict=True))
            if calendar.is_open(bar.open_ms)
        ]
        for start in range(0, len(bars), 50_000):
            store.append(bars[start : start + 50_000])
        total += len(bars)
    store.close()
    return total


def measure(root: Path, module_path: str) -> None:
    """In this (fresh) process: RSS around open, tail rebuild and a year's read."""
    before = rss_mb()
    store_class: type[JsonlStore] = JsonlStore
    if module_path:
        spec = importlib.util.spec_from_file_location("old_ssot_jsonl", module_path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        store_class = module.JsonlStore
    started = time.perf_counter()
    store = store_class(root)
    report = store.open()
    opened_s = time.perf_counter() - started
    after_open = rss_mb()
    TailCache(TAIL_WINDOW).rebuild(store)
    after_tail = rss_mb()
    year = sum(1 for _ in store.bars("GBPUSD", Timeframe.M1))
    after_read = rss_mb()
    store.close()
    print(
        f"{'old' if module_path else 'new'} store: {report.bars_loaded} bars in "
        f"{report.files_checked} files, open {opened_s:.1f} s; RSS before open {before:.0f} MB, "
        f"after open {after_open:.0f} MB, after tail rebuild {after_tail:.0f} MB, "
        f"after reading one symbol-year ({year} bars) {after_read:.0f} MB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old", help="also measure the store module at this git revision")
    parser.add_argument("--measure", nargs=2, metavar=("ROOT", "MODULE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(Path(args.measure[0]), args.measure[1])
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ssot"
        started = time.perf_counter()
        total = build(root)
        took = time.perf_counter() - started
        print(f"wrote {total} 1m finals ({len(SYMBOLS)} symbol-years) in {took:.0f} s")
        runs = [""]
        if args.old:
            old = Path(tmp) / "old_ssot_jsonl.py"
            old.write_bytes(
                subprocess.run(  # noqa: S603 - our own arguments; git from PATH as in make
                    ["git", "show", f"{args.old}:src/fxconnector/runtime/store/ssot_jsonl.py"],  # noqa: S607
                    cwd=REPO,
                    check=True,
                    capture_output=True,
                ).stdout
            )
            runs.append(str(old))
        for module in runs:
            subprocess.run(  # noqa: S603 - this interpreter and our own arguments
                [sys.executable, "-m", "bench.store_rss", "--measure", str(root), module],
                cwd=REPO,
                check=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
