"""Dukascopy datafeed files (`.bi5`): hourly tick files in the vendor tree, and candle files.

Rules:
- The vendor layout is `{SYM}/{YYYY}/{MM}/{DD}/{HH}h_ticks.bi5` with ZERO-BASED month folders
  (`2019/01` is February). Entries that do not fit the layout (candle files, notes) are not tick
  files and are not read; a path that fits it but is not a real hour is an error.
- A file is LZMA "alone" data holding big-endian fixed-size records; a 0-byte file means no data.
  Tick `>IIIff`: ms since the hour's start, ASK points, BID points, ask volume, bid volume.
  Candle `>IIIIIf`: seconds since the period's start, OPEN, CLOSE, LOW, HIGH, volume.
- price = points x point size, as the float nearest to the decimal quote (114545 -> 1.14545).
- Decoding is vectorised with numpy: no Python loop per record; hour files are decompressed by
  a few threads at once (LZMA releases the GIL), their rows still taken in time order.
- Hour files wholly outside `[from_ms, to_ms)` are pruned by their path, before being read.
- Rows stay in file order, hour files in time order; nothing is sorted or de-duplicated.
- Every defect of a file raises ConfigError naming the file. Prices are not judged here (the tick
  validator downstream does that), and the caller has already checked the symbol's spelling.
"""

from __future__ import annotations

import datetime as dt
import lzma
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from fxconnector.core.errors import ConfigError
from fxconnector.core.model.tick import TickBatch
from fxconnector.core.time_geom import HOUR_MS, to_ms

_TICK_DTYPE: Final = np.dtype(
    [
        ("offset_ms", ">u4"),
        ("ask", ">u4"),
        ("bid", ">u4"),
        ("ask_volume", ">f4"),
        ("bid_volume", ">f4"),
    ]
)
_CANDLE_DTYPE: Final = np.dtype(
    [
        ("offset_s", ">u4"),
        ("open", ">u4"),
        ("close", ">u4"),
        ("low", ">u4"),
        ("high", ">u4"),
        ("volume", ">f4"),
    ]
)
_HOUR_GLOB: Final = "[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/[0-9][0-9]h_ticks.bi5"
#: Threads decompressing hour files at once (each LZMA stream by one; a thread waiting on its
#: read leaves the core to another, so more threads than cores still gain).
_DECODERS: Final = 4
_LAYOUT_HINT: Final = "{SYM}/{YYYY}/{MM}/{DD}/{HH}h_ticks.bi5, months counting from 00"

Records = npt.NDArray[np.void]
F64Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Candle:
    """One Dukascopy candle; `open_ms` is the period's OPEN time (UTC epoch ms)."""

    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class _HourFile:
    start_ms: int
    path: Path


def point_decimals(symbol: str) -> int:
    """Decimals of one point: 3 for pairs quoted in JPY, else 5."""
    return 3 if symbol.endswith("JPY") else 5


def point_size(symbol: str) -> float:
    """Price of one Dukascopy point: 1e-3 for pairs quoted in JPY, else 1e-5."""
    return 1e-3 if point_decimals(symbol) == 3 else 1e-5


def symbol_folder(path: Path, symbol: str) -> Path:
    """The `{SYM}` folder: `path/symbol` when `path` is the ROOT, or `path` itself."""
    # A SYM folder holds only year folders, never one named like a symbol, so the child wins.
    child = path / symbol
    if child.is_dir():
        return child
    if path.name == symbol and path.is_dir():
        return path
    raise ConfigError(f"{path}: no folder {symbol}/ for the symbol (layout {_LAYOUT_HINT})")


def read_tick_tree(sym_dir: Path, symbol: str, from_ms: int | None, to_ms: int | None) -> TickBatch:
    """Every tick of the hour files under `sym_dir` that may fall in `[from_ms, to_ms)`.

    The batch still holds the ticks of the boundary hours outside the range; the caller filters.
    """
    hours = [
        hour
        for hour in _hour_files(sym_dir)
        if _overlaps(hour.start_ms, hour.start_ms + HOUR_MS, from_ms, to_ms)
    ]
    # LZMA decoding is most of the work and releases the GIL: files are decompressed in
    # parallel and their bytes taken (and their defects raised) in time order; the records of
    # all of them become numpy columns at once (per-file casts of ~2k rows would hold the GIL
    # for longer than they compute).
    with ThreadPoolExecutor(_DECODERS) as pool:
        raw = list(pool.map(_tick_bytes, hours))
    records = np.frombuffer(b"".join(raw), dtype=_TICK_DTYPE)
    counts = np.fromiter((len(data) // _TICK_DTYPE.itemsize for data in raw), np.int64, len(raw))
    starts = np.fromiter((hour.start_ms for hour in hours), np.int64, len(hours))
    decimals = point_decimals(symbol)
    return TickBatch(
        symbol=symbol,
        ts_ms=records["offset_ms"].astype(np.int64) + np.repeat(starts, counts),
        bid=_prices(records["bid"], decimals),
        ask=_prices(records["ask"], decimals),
        bid_volume=records["bid_volume"].astype(np.float64),
        ask_volume=records["ask_volume"].astype(np.float64),
    )


def read_candle_file(path: Path, symbol: str, period_start_ms: int) -> list[Candle]:
    """The candles of one `*_candles_*.bi5` file whose period starts at `period_start_ms`."""
    records = _records(path, _CANDLE_DTYPE)
    decimals = point_decimals(symbol)
    open_ms = records["offset_s"].astype(np.int64) * 1000 + period_start_ms
    columns = zip(
        open_ms.tolist(),
        _prices(records["open"], decimals).tolist(),
        _prices(records["high"], decimals).tolist(),
        _prices(records["low"], decimals).tolist(),
        _prices(records["close"], decimals).tolist(),
        records["volume"].astype(np.float64).tolist(),
        strict=True,
    )
    return [Candle(*row) for row in columns]


def _hour_files(sym_dir: Path) -> list[_HourFile]:
    """Hour tick files under `sym_dir`, in time order."""
    found = [_HourFile(_hour_start_ms(path, sym_dir), path) for path in sym_dir.glob(_HOUR_GLOB)]
    return sorted(found, key=lambda hour: hour.start_ms)


def _hour_start_ms(path: Path, sym_dir: Path) -> int:
    year, month0, day, hour_file = path.relative_to(sym_dir).parts
    hour = int(hour_file[:2])
    try:
        # The vendor's month folders count from 00; datetime's months count from 1.
        start = dt.datetime(int(year), int(month0) + 1, int(day), hour, tzinfo=dt.UTC)
    except ValueError as exc:
        raise ConfigError(f"{path}: not an hour of the layout {_LAYOUT_HINT} ({exc})") from exc
    return to_ms(start)


def _overlaps(start_ms: int, end_ms: int, from_ms: int | None, to_ms: int | None) -> bool:
    """True when `[start_ms, end_ms)` meets `[from_ms, to_ms)` (None = unbounded)."""
    return (from_ms is None or end_ms > from_ms) and (to_ms is None or start_ms < to_ms)


def _records(path: Path, dtype: np.dtype[np.void]) -> Records:
    """The fixed-size records of one `.bi5` file (empty for a 0-byte file)."""
    return np.frombuffer(_decompress_records(path, dtype), dtype=dtype)


def _decompress_records(path: Path, dtype: np.dtype[np.void]) -> bytes:
    """The decompressed bytes of one `.bi5` file, checked to hold whole `dtype` records."""
    data = _decompress(path)
    if len(data) % dtype.itemsize:
        raise ConfigError(
            f"{path}: {len(data)} decompressed bytes are not a whole number of "
            f"{dtype.itemsize}-byte records (truncated or not this kind of file)"
        )
    return data


def _decompress(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not raw:
        return b""
    # A decompressor object, not lzma.decompress(): the latter ignores trailing junk silently.
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    try:
        data = decompressor.decompress(raw)
    except lzma.LZMAError as exc:
        raise ConfigError(f"{path}: not valid LZMA (alone) data: {exc}") from exc
    if not decompressor.eof:
        raise ConfigError(f"{path}: LZMA data ends before its end marker (truncated file)")
    if decompressor.unused_data:
        extra = len(decompressor.unused_data)
        raise ConfigError(f"{path}: {extra} bytes of junk after the end of the LZMA data")
    return data


def _tick_bytes(hour: _HourFile) -> bytes:
    """One hour file's tick records, decompressed; a tick's offset must lie inside the hour,
    or its time would be a lie."""
    data = _decompress_records(hour.path, _TICK_DTYPE)
    offsets = np.frombuffer(data, dtype=_TICK_DTYPE)["offset_ms"]
    if offsets.size and int(offsets.max()) >= HOUR_MS:
        raise ConfigError(f"{hour.path}: a tick lies {int(offsets.max())} ms after the hour")
    return data


def _prices(points: npt.NDArray[np.uint32], decimals: int) -> F64Array:
    # One correctly rounded division of two exact values yields the float nearest to the
    # decimal quote, the same as np.round(points * point, decimals) at a fraction of the cost.
    return points.astype(np.float64) / float(10**decimals)
