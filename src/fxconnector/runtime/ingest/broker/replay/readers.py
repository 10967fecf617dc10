"""Readers of recorded tick files for the replay broker: one entry point per question.

Rules:
- `read_ticks` returns one `TickBatch` of numpy columns in file order: nothing is sorted or
  de-duplicated, and `[from_ms, to_ms)` keeps `from_ms <= ts_ms < to_ms`.
- Formats: a Dukascopy `.bi5` tree (`dukascopy.py`) or a CSV file: generic, TrueFX or HistData
  (`csv_formats.py`). `auto` takes a folder for a Dukascopy tree and sniffs a file's first
  non-empty line.
- Everything wrong with the input (missing path, unknown or undetectable format, bad symbol,
  no ticks at all or none in the range, a corrupt file, an unparseable row) raises ConfigError
  with one line naming the file; never a raw exception, never a silent skip.
- Prices are parsed faithfully and not judged: NaN, non-positive prices and ask < bid are the
  tick validator's job downstream.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final, Literal, get_args

import numpy as np

from fxconnector.core.errors import ConfigError
from fxconnector.core.model.bar import SYMBOL_PATTERN
from fxconnector.core.model.tick import TickBatch
from fxconnector.core.time_geom import iso_utc
from fxconnector.runtime.ingest.broker.replay.candles import candle_format, is_zip
from fxconnector.runtime.ingest.broker.replay.csv_formats import read_csv_ticks, sniff
from fxconnector.runtime.ingest.broker.replay.dukascopy import (
    Candle,
    point_size,
    read_candle_file,
    read_tick_tree,
    symbol_folder,
)

__all__ = [
    "FORMATS",
    "Candle",
    "Format",
    "detect_format",
    "point_size",
    "read_dukascopy_candles",
    "read_ticks",
]

Format = Literal["auto", "dukascopy", "csv", "truefx", "histdata"]
#: What a file or folder is actually written in (`auto` resolved).
KnownFormat = Literal["dukascopy", "csv", "truefx", "histdata"]
FORMATS: Final[tuple[Format, ...]] = get_args(Format)

_SYMBOL: Final = re.compile(SYMBOL_PATTERN.removeprefix("^").removesuffix("$"))
#: Enough of a file's start to hold its first lines; a longer first line is not a tick CSV.
_SNIFF_BYTES: Final = 64 * 1024


def detect_format(path: Path) -> Format:
    """The format of `path`: a folder is a Dukascopy tree; a file is sniffed by its first line."""
    try:
        return _detect(path)
    except OSError as exc:
        raise _unreadable(path, exc) from exc


def read_ticks(
    path: Path,
    symbol: str,
    fmt: Format = "auto",
    from_ms: int | None = None,
    to_ms: int | None = None,
) -> TickBatch:
    """Every tick of `symbol` in `path` with `from_ms <= ts_ms < to_ms`, in file order."""
    _check_symbol(path, symbol)
    if fmt not in FORMATS:
        raise ConfigError(f"{path}: unknown tick file format {fmt!r} (known: {', '.join(FORMATS)})")
    if from_ms is not None and to_ms is not None and from_ms >= to_ms:
        raise ConfigError(f"{path}: empty range{_range_text(from_ms, to_ms)}")
    try:
        batch = _read(path, symbol, fmt, from_ms, to_ms)
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    batch = _within(batch, from_ms, to_ms)
    if not len(batch):
        raise ConfigError(f"{path}: no {symbol} ticks{_range_text(from_ms, to_ms)}")
    return batch


def read_dukascopy_candles(path: Path, symbol: str, period_start_ms: int) -> list[Candle]:
    """The candles of one `*_candles_min_1.bi5` / `*_candles_hour_1.bi5` file.

    `period_start_ms` is the start of the file's period (its day for minute candles, its month
    for hour candles); each candle's `open_ms` is that plus the record's offset.
    """
    _check_symbol(path, symbol)
    try:
        _check_exists(path)
        if not path.is_file():
            raise ConfigError(f"{path}: a candle file is a file, not a folder")
        candles = read_candle_file(path, symbol, period_start_ms)
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    if not candles:
        raise ConfigError(f"{path}: no candles")
    return candles


def _read(
    path: Path, symbol: str, fmt: Format, from_ms: int | None, to_ms: int | None
) -> TickBatch:
    """The ticks of `path` before the range filter (the Dukascopy reader prunes whole hours)."""
    _check_exists(path)
    chosen: KnownFormat = _detect(path) if fmt == "auto" else fmt
    if chosen == "dukascopy":
        return read_tick_tree(_tree_folder(path, symbol), symbol, from_ms, to_ms)
    if not path.is_file():
        raise ConfigError(f"{path}: the {chosen} format is read from a file, not a folder")
    return read_csv_ticks(path, symbol, chosen)


def _detect(path: Path) -> KnownFormat:
    _check_exists(path)
    if path.is_dir():
        return "dukascopy"
    if path.suffix == ".bi5":
        # The hour of a tick file is in its folder path; the file alone cannot be placed in time.
        raise ConfigError(f"{path}: a single .bi5 file cannot be read; pass ROOT or ROOT/SYM")
    if is_zip(path):
        raise ConfigError(
            f"{path}: a zip archive, not a tick file; 1m candle files (FXCM's zipped yearly "
            "CSVs, HistData M1) are stored with `fxconnector import`"
        )
    line = _first_line(path)
    if candle_format(line) is not None:
        raise ConfigError(
            f"{path}: 1m candles, not ticks; candle files are stored with `fxconnector import`"
        )
    found = sniff(line)
    if found is None:
        if "\ufffd" in line or any(ord(ch) < 32 and ch != "\t" for ch in line):
            # Never echo a binary file's bytes: they say nothing and garble the terminal.
            raise ConfigError(f"{path}: not a text file (binary content), so not a tick file")
        raise ConfigError(
            f"{path}: cannot detect the format from the first line {line[:80]!r} "
            "(expected ts,bid,ask[,bid_volume,ask_volume], TrueFX or HistData)"
        )
    return found


def _check_symbol(path: Path, symbol: str) -> None:
    if not _SYMBOL.fullmatch(symbol):
        raise ConfigError(
            f"{path}: symbol {symbol!r} is not an instrument name like EURUSD ({SYMBOL_PATTERN})"
        )


def _unreadable(path: Path, exc: OSError) -> ConfigError:
    # The readers map the I/O errors they expect; this maps any left (e.g. an unlistable folder).
    return ConfigError(f"{exc.filename or path}: cannot be read ({exc.strerror or exc})")


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder")


def _tree_folder(path: Path, symbol: str) -> Path:
    if not path.is_dir():
        raise ConfigError(f"{path}: the dukascopy format is read from a folder (ROOT or ROOT/SYM)")
    return symbol_folder(path, symbol)


def _first_line(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            head = stream.read(_SNIFF_BYTES)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    # Replacement characters only matter for sniffing: a binary file then matches no format.
    for line in head.decode("utf-8-sig", errors="replace").split("\n"):
        if line.strip():
            return line.strip()
    raise ConfigError(f"{path}: empty file (no ticks)")


def _within(batch: TickBatch, from_ms: int | None, to_ms: int | None) -> TickBatch:
    if from_ms is None and to_ms is None:
        return batch
    keep = np.ones(len(batch), dtype=bool)
    if from_ms is not None:
        keep &= batch.ts_ms >= from_ms
    if to_ms is not None:
        keep &= batch.ts_ms < to_ms
    return batch.select(keep)


def _range_text(from_ms: int | None, to_ms: int | None) -> str:
    if from_ms is None and to_ms is None:
        return ""
    start = "-inf" if from_ms is None else _when(from_ms)
    end = "+inf" if to_ms is None else _when(to_ms)
    return f" in [{start}, {end})"


def _when(ts_ms: int) -> str:
    try:
        return iso_utc(ts_ms)
    except (OverflowError, ValueError):
        return f"{ts_ms} ms"  # beyond what datetime can spell; the number still says it
