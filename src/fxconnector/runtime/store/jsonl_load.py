"""Loading a JSONL store at open(): every line checked, only a small index kept (see
`ssot_jsonl`'s rules on recovery)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fxconnector.core.errors import ContractViolation
from fxconnector.core.time_geom import DAY_MS, Timeframe
from fxconnector.core.utils import json_codec
from fxconnector.runtime.store import rules
from fxconnector.runtime.store.jsonl_files import (
    FETCHED_DECODER,
    FETCHED_NAME,
    FetchedLine,
    day_of,
    decode_lines,
    good_bars,
    read_repaired,
    rewrite,
    without,
)
from fxconnector.runtime.store.jsonl_index import DayInfo, SeriesIndex

_TIMEFRAMES: Final = {tf.value: tf for tf in Timeframe}


def load_all(
    root: Path,
    index: dict[tuple[str, Timeframe], SeriesIndex],
    fetched: dict[str, list[rules.Interval]],
    torn: list[str],
    corrupt: list[str],
) -> int:
    """Check every line of the store under `root` into `index` and `fetched` (both empty);
    the number of files read."""
    files = 0
    for symbol_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        symbol = symbol_dir.name
        if not rules.valid_symbol(symbol):
            continue  # not ours (e.g. a backup folder): the store never creates these
        files += _load_fetched(symbol_dir / FETCHED_NAME, symbol, fetched, torn, corrupt)
        unsure_days: set[int] = set()
        for tf_dir in sorted(p for p in symbol_dir.iterdir() if p.is_dir()):
            tf = _TIMEFRAMES.get(tf_dir.name)
            if tf is not None:
                files += _load_series(tf_dir, symbol, tf, index, torn, corrupt, unsure_days)
        for day in sorted(unsure_days):
            fetched[symbol] = without(fetched.get(symbol, []), day * DAY_MS, (day + 1) * DAY_MS)
    return files


def _load_series(
    tf_dir: Path,
    symbol: str,
    tf: Timeframe,
    index: dict[tuple[str, Timeframe], SeriesIndex],
    torn: list[str],
    corrupt: list[str],
    unsure_days: set[int],
) -> int:
    """Check every line of every day file of one series; keep only the index of each. Bad
    lines go to `corrupt`, the 1m days they hit to `unsure_days`."""
    series = index.setdefault((symbol, tf), SeriesIndex())
    paths = sorted(tf_dir.glob("*.jsonl"))
    for path in paths:
        day = day_of(path)
        if day is None:
            corrupt.append(f"{path}: not a day file name (YYYY-MM-DD.jsonl); not read")
            continue
        data = read_repaired(path, torn)
        latest = good_bars(path, data, symbol, tf, day, corrupt, unsure_days)
        if latest:  # an empty file (a crash before its first line) holds nothing
            series.add(day, DayInfo(len(latest), min(latest), max(latest)))
    return len(paths)


def _load_fetched(
    path: Path,
    symbol: str,
    fetched: dict[str, list[rules.Interval]],
    torn: list[str],
    corrupt: list[str],
) -> int:
    if not path.exists():
        return 0
    before = len(corrupt)
    numbers, decoded = decode_lines(FETCHED_DECODER, path, read_repaired(path, torn), corrupt)
    lines = []
    for line_number, line in zip(numbers, decoded, strict=True):
        try:
            rules.check_interval(symbol, line.from_ms, line.to_ms)
        except ContractViolation as exc:
            # Coverage lost is only asked again; a bad interval believed could make a quiet.
            corrupt.append(f"{path}:{line_number}: {exc}")
            continue
        lines.append(line)
    merged = rules.merge_all((line.from_ms, line.to_ms) for line in lines)
    fetched[symbol] = merged
    # Compacting would erase a corrupt line's evidence: only a clean file is rewritten.
    if len(lines) > 2 * len(merged) + 64 and len(corrupt) == before:
        rewrite(path, json_codec.encode_lines([FetchedLine(a, b) for a, b in merged]))
    return 1
