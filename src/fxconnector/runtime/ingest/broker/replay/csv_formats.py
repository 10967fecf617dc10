"""Tick CSV files: generic `ts,bid,ask[,bid_volume,ask_volume]`, TrueFX and HistData.

Rules:
- A file is UTF-8 text (a leading BOM is allowed), lines end in LF or CRLF. Blank lines carry
  nothing and are passed over; line numbers in errors count every physical line from 1.
- Rows stay in file order, duplicates included; nothing is sorted or de-duplicated.
- Every row must parse and have the file's column count; the first bad row raises ConfigError
  naming the file and line. Nothing is skipped silently.
- Prices are parsed, not judged: `nan` becomes NaN, ask < bid passes (the tick validator
  downstream owns those checks).
- Times become UTC epoch ms:
  generic  `ts` is ISO-8601 with `Z` or an offset (naive = UTC), or integer epoch ms;
  TrueFX   `USD/JPY,20130101 22:00:00.295,86.655,86.728` = pair, UTC time, bid, ask;
  HistData `20200101 170000065,1.121200,1.121720,0` = New York standard time WITHOUT DST
           (UTC-5 all year, so +5 h), bid, ask, an always-zero volume that is dropped.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, Literal

import numpy as np

from fxconnector.core.errors import ConfigError
from fxconnector.core.model.tick import TickBatch
from fxconnector.core.time_geom import DAY_MS, HOUR_MS, MINUTE_MS, to_ms

TextFormat = Literal["csv", "truefx", "histdata"]

#: A parsed row: ts_ms, bid, ask and, in generic files with sizes, bid_volume, ask_volume.
Row = tuple[int, float, float] | tuple[int, float, float, float, float]
RowParser = Callable[[Sequence[str]], Row]

_TRUEFX_PAIR: Final = re.compile(r"[A-Z][A-Z0-9]{2}/[A-Z][A-Z0-9]{2}")
_TRUEFX_TIME: Final = re.compile(r"(\d{4})(\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?")
_HISTDATA_TIME: Final = re.compile(r"(\d{4})(\d{2})(\d{2}) (\d{2})(\d{2})(\d{2})(\d{3})")
_EPOCH_MS: Final = re.compile(r"-?\d{1,18}")
_HEADER_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_ ]*")
_GENERIC_COLUMNS: Final = ("bid", "ask", "bid_volume", "ask_volume")
#: HistData stamps New York standard time all year (EST = UTC-5, no DST).
_HISTDATA_TO_UTC_MS: Final = 5 * HOUR_MS


def sniff(line: str) -> TextFormat | None:
    """The CSV format one data (or header) line is written in, or None."""
    fields = [field.strip() for field in line.split(",")]
    if len(fields) == 4 and _TRUEFX_PAIR.fullmatch(fields[0]) and _TRUEFX_TIME.fullmatch(fields[1]):
        return "truefx"
    if len(fields) == 4 and _HISTDATA_TIME.fullmatch(fields[0]):
        return "histdata"
    if len(fields) in (3, 5) and (_HEADER_NAME.fullmatch(fields[0]) or _is_generic_time(fields[0])):
        return "csv"
    return None


def read_csv_ticks(path: Path, symbol: str, fmt: TextFormat) -> TickBatch:
    """Every tick of one CSV file of format `fmt`, in file order (possibly none)."""
    lines = _numbered_lines(path)
    parse: RowParser
    if fmt == "csv":
        lines, width = _generic_layout(path, lines)
        parse = _generic_row
    elif fmt == "truefx":
        width, parse = 4, functools.partial(_truefx_row, symbol=symbol)
    else:
        width, parse = 4, _histdata_row
    rows = [_parse_line(path, line_no, line, width, parse) for line_no, line in lines]
    return _batch(symbol, rows, width == 5 and fmt == "csv")


def _numbered_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of every non-blank line."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    # split("\n"), not splitlines(): that also splits on \x0b, \x1c... and would skew line numbers.
    numbered = ((number, line.strip()) for number, line in enumerate(text.split("\n"), start=1))
    return [(number, line) for number, line in numbered if line]


def _parse_line(path: Path, line_no: int, line: str, width: int, parse: RowParser) -> Row:
    fields = line.split(",")
    try:
        if len(fields) != width:
            raise ValueError(f"{len(fields)} columns where every row has {width}")
        return parse(fields)
    except ValueError as exc:
        raise ConfigError(f"{path}:{line_no}: {exc} in {_clip(line)!r}") from exc


def _generic_layout(path: Path, lines: list[tuple[int, str]]) -> tuple[list[tuple[int, str]], int]:
    """The data lines and the column count of a generic file, its header (if any) checked."""
    if not lines:
        return lines, 3
    line_no, first = lines[0]
    fields = [field.strip() for field in first.split(",")]
    if len(fields) not in (3, 5):
        raise ConfigError(
            f"{path}:{line_no}: {len(fields)} columns; a generic tick CSV has "
            f"ts,bid,ask or ts,bid,ask,bid_volume,ask_volume"
        )
    if not _HEADER_NAME.fullmatch(fields[0]):
        return lines, len(fields)
    names = [field.lower() for field in fields[1:]]
    if names != list(_GENERIC_COLUMNS[: len(names)]):
        # Columns are found by position; a header in another order would swap bid and ask.
        expected = ",".join(("ts", *_GENERIC_COLUMNS[: len(names)]))
        raise ConfigError(f"{path}:{line_no}: header {first!r} must name the columns {expected}")
    return lines[1:], len(fields)


def _generic_row(fields: Sequence[str]) -> Row:
    ts_ms = _generic_time(fields[0].strip())
    if len(fields) == 3:
        return ts_ms, _number(fields[1], "bid"), _number(fields[2], "ask")
    return (
        ts_ms,
        _number(fields[1], "bid"),
        _number(fields[2], "ask"),
        _number(fields[3], "bid_volume"),
        _number(fields[4], "ask_volume"),
    )


def _truefx_row(fields: Sequence[str], symbol: str) -> Row:
    pair = fields[0].strip()
    if pair.replace("/", "") != symbol:
        raise ValueError(f"pair {pair!r} is not the symbol {symbol}")
    match = _TRUEFX_TIME.fullmatch(fields[1].strip())
    if match is None:
        raise ValueError(f"time {fields[1]!r} is not YYYYMMDD HH:MM:SS.mmm")
    year, month, day, hour, minute, second, fraction = match.groups()
    # A shorter fraction is tenths or hundredths: ".5" is 500 ms.
    millis = int((fraction or "0").ljust(3, "0"))
    ts_ms = _civil_ms(year, month, day, hour, minute, second, millis)
    return ts_ms, _number(fields[2], "bid"), _number(fields[3], "ask")


def _histdata_row(fields: Sequence[str]) -> Row:
    match = _HISTDATA_TIME.fullmatch(fields[0].strip())
    if match is None:
        raise ValueError(f"time {fields[0]!r} is not YYYYMMDD HHMMSSmmm")
    year, month, day, hour, minute, second, millis = match.groups()
    ts_ms = _civil_ms(year, month, day, hour, minute, second, int(millis)) + _HISTDATA_TO_UTC_MS
    _number(fields[3], "volume")  # always 0 in HistData files, yet it must be a number
    return ts_ms, _number(fields[1], "bid"), _number(fields[2], "ask")


def _is_generic_time(text: str) -> bool:
    try:
        _generic_time(text)
    except ValueError:
        return False
    return True


def _generic_time(text: str) -> int:
    if _EPOCH_MS.fullmatch(text):
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"time {text!r} is neither ISO-8601 nor integer epoch ms") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)  # the documented rule: a naive time is UTC
    return to_ms(moment)


def _civil_ms(
    year: str, month: str, day: str, hour: str, minute: str, second: str, millis: int
) -> int:
    """Epoch ms of a wall-clock time read as UTC; ValueError when it is not a real time."""
    hours, minutes, seconds = int(hour), int(minute), int(second)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"time of day {hour}:{minute}:{second} does not exist")
    return (
        _day_start_ms(int(year), int(month), int(day))
        + hours * HOUR_MS
        + minutes * MINUTE_MS
        + seconds * 1000
        + millis
    )


@functools.lru_cache(maxsize=4096)
def _day_start_ms(year: int, month: int, day: int) -> int:
    # Cached: tick files repeat the same few dates on every row.
    try:
        ordinal = dt.date(year, month, day).toordinal()
    except ValueError as exc:
        raise ValueError(f"date {year:04d}-{month:02d}-{day:02d} does not exist ({exc})") from exc
    return (ordinal - dt.date(1970, 1, 1).toordinal()) * DAY_MS


def _number(text: str, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{column} {text.strip()!r} is not a number") from None


def _batch(symbol: str, rows: list[Row], with_volumes: bool) -> TickBatch:
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
    return TickBatch(
        symbol=symbol,
        ts_ms=np.array(columns[0], dtype=np.int64),
        bid=np.array(columns[1], dtype=np.float64),
        ask=np.array(columns[2], dtype=np.float64),
        bid_volume=np.array(columns[3], dtype=np.float64) if with_volumes else None,
        ask_volume=np.array(columns[4], dtype=np.float64) if with_volumes else None,
    )


def _clip(line: str, limit: int = 80) -> str:
    return line if len(line) <= limit else line[:limit] + "..."
