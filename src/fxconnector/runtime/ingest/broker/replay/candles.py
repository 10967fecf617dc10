"""Readers of recorded 1-minute candle files: what `fxconnector import` stores as final 1m bars.

Formats (every candle time is the bar's OPEN, converted here, once, to `[open_ms, close_ms]`):
- `fxcm`: FXCM's yearly files, a zip holding one CSV (or that CSV itself). Header
  `timestamp,open,high,low,close`, rows `2012-01-02 03:09:00+00:00,1.55454,1.55454,1.55089,
  1.55089`: the time carries its UTC offset; there is no volume column. Minutes without ticks
  are left out. One side per file: `...-bid-...` or `...-ask-...` in the file name.
- `histdata-m1`: HistData's "Generic ASCII" M1 bars, no header, `;`-separated:
  `20120201 000000;1.306600;1.306600;1.306560;1.306560;0` = `YYYYMMDD HHMMSS;open;high;low;
  close;volume`. Times are Eastern Standard Time without daylight saving (UTC-5 all year): add
  5 hours for UTC. The volume column is 0 in HistData's FX files. Bid prices. A zip holding
  one such file is read too.
- `auto` sniffs the first line: the FXCM header, or a HistData row.

Rules:
- A candle becomes a final 1m bar (`complete=true`, `source=history`, `event_ts=close_ms`,
  `rev=0`); its `volume` is the file's (0 where it has none) and `tick_count` is 0 (unknown).
- A bad line (wrong column count, a number that is not a positive finite price, high/low that
  do not contain open and close, a time that is not on a minute, a minute not after the
  previous one) is, with `on_bad_line="error"`, a ConfigError of one line naming file and
  line number; with `"skip"` it is counted and the first one kept as a sample.
- Everything else wrong (missing path, not a zip or text, several files in a zip, unknown
  format) is a ConfigError of one line; bytes of a binary file are never echoed.
"""

from __future__ import annotations

import functools
import math
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal, get_args

from fxconnector.core.errors import ConfigError
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import MINUTE_MS, Timeframe

CandleFormat = Literal["auto", "fxcm", "histdata-m1"]
CANDLE_FORMATS: Final[tuple[CandleFormat, ...]] = get_args(CandleFormat)
BadLinePolicy = Literal["error", "skip"]

FXCM_HEADER: Final = "timestamp,open,high,low,close"
_HISTDATA_ROW: Final = re.compile(r"^\d{8} \d{6};")
_FXCM_UTC_TIME: Final = re.compile(r"\d{4}-\d\d-\d\d ([01]\d|2[0-3]):[0-5]\d:[0-5]\d\+00:00")
_EST_OFFSET_MS: Final = 5 * 3_600_000
_ZIP_MAGIC: Final = b"PK\x03\x04"
_CLIP: Final = 80
_PROGRESS_LINES: Final = 1 << 16


@dataclass(frozen=True, slots=True)
class CandleFile:
    """What one candle file held: its final 1m bars, ascending, and what was skipped."""

    path: Path
    format: CandleFormat
    side: Literal["bid", "ask"] | None  # from an FXCM file name; None when it does not say
    bars: list[OhlcvEvent]
    rows: int
    bad_lines: int
    first_bad_line: str | None


class _BadLine(ValueError):
    """One unusable line (the message says why)."""


def is_zip(path: Path) -> bool:
    """Whether `path` starts like a zip archive."""
    try:
        with path.open("rb") as stream:
            return stream.read(4) == _ZIP_MAGIC
    except OSError:
        return False


def read_candles(
    path: Path,
    symbol: str,
    fmt: CandleFormat = "auto",
    *,
    on_bad_line: BadLinePolicy = "error",
    from_ms: int | None = None,
    to_ms: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CandleFile:
    """The candles of `path` as final 1m bars of `symbol` with `from_ms <= open_ms < to_ms`.

    `progress(lines done, lines in all)` is called every `_PROGRESS_LINES` lines and at the end.
    """
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    if path.is_dir():
        raise ConfigError(f"{path}: a candle file is a file (or a zip of one), not a folder")
    lines = _text_lines(path)
    first = next((line for _, line in lines if line.strip()), None)
    if first is None:
        raise ConfigError(f"{path}: empty file (no candles)")
    chosen = _detect(path, first) if fmt == "auto" else fmt
    if chosen == "fxcm" and first.strip() != FXCM_HEADER:
        raise ConfigError(f"{path}: an FXCM candle file starts with the header {FXCM_HEADER!r}")
    parse = _fxcm_row if chosen == "fxcm" else _histdata_row
    bars: list[OhlcvEvent] = []
    rows = bad = 0
    first_bad: str | None = None
    last_open = -1
    for line_no, line in lines:
        if progress is not None and not line_no % _PROGRESS_LINES:
            progress(line_no, len(lines))
        text = line.strip()
        if not text or (chosen == "fxcm" and text == FXCM_HEADER):
            continue
        rows += 1
        try:
            open_ms, prices, volume = parse(text)
            if open_ms % MINUTE_MS:
                raise _BadLine("the time is not on a minute")
            if open_ms <= last_open:
                raise _BadLine("the minute is not after the previous line's")
            _check_prices(*prices)
        except _BadLine as exc:
            where = f"{path}:{line_no}: {exc} in {_clip(text)!r}"
            if on_bad_line == "error":
                raise ConfigError(
                    where + " (--on-bad-line skip counts and skips such lines)"
                ) from None
            bad += 1
            first_bad = first_bad or where
            continue
        last_open = open_ms
        if (from_ms is not None and open_ms < from_ms) or (to_ms is not None and open_ms >= to_ms):
            continue
        bars.append(_bar(symbol, open_ms, prices, volume))
    if progress is not None:
        progress(len(lines), len(lines))
    return CandleFile(path, chosen, _side(path), bars, rows, bad, first_bad)


def _text_lines(path: Path) -> list[tuple[int, str]]:
    try:
        raw = _zip_member(path) if is_zip(path) else path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file (byte {exc.start} is not UTF-8)") from None
    if "\x00" in text[:4096]:
        raise ConfigError(f"{path}: not a text file (binary content)")
    return list(enumerate(text.splitlines(), start=1))


def _zip_member(path: Path) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                names = ", ".join(m.filename for m in members[:5]) or "none"
                raise ConfigError(
                    f"{path}: a candle zip holds exactly one file, this one {len(members)} "
                    f"({names})"
                )
            return archive.read(members[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise ConfigError(f"{path}: a damaged or unsupported zip archive ({exc})") from None


def candle_format(first_line: str) -> CandleFormat | None:
    """The candle format a file's first line says, or None."""
    if first_line.strip() == FXCM_HEADER:
        return "fxcm"
    if _HISTDATA_ROW.match(first_line.strip()):
        return "histdata-m1"
    return None


def _detect(path: Path, first: str) -> CandleFormat:
    found = candle_format(first)
    if found is not None:
        return found
    raise ConfigError(
        f"{path}: not a 1m candle file: the first line is neither FXCM's header "
        f"{FXCM_HEADER!r} nor a HistData M1 row (YYYYMMDD HHMMSS;open;high;low;close;volume), "
        f"it starts {_clip(first)!r}"
    )


def _side(path: Path) -> Literal["bid", "ask"] | None:
    name = path.name.lower()
    if "-bid-" in name or "_bid_" in name:
        return "bid"
    if "-ask-" in name or "_ask_" in name:
        return "ask"
    return None


Prices = tuple[float, float, float, float]


@functools.lru_cache(maxsize=4096)
def _utc_day_ms(day: str) -> int:
    """Epoch ms of a `YYYY-MM-DD` day's UTC midnight (cached: a year has 366 of them)."""
    return round(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


def _fxcm_row(text: str) -> tuple[int, Prices, float]:
    fields = text.split(",")
    if len(fields) != 5:
        raise _BadLine(f"{len(fields)} columns, FXCM rows have 5 (timestamp,open,high,low,close)")
    when = fields[0]
    if _FXCM_UTC_TIME.fullmatch(when):
        # The file's own spelling, in UTC: the day once, then the clock (8x faster).
        clock_ms = (int(when[11:13]) * 60 + int(when[14:16])) * MINUTE_MS + int(when[17:19]) * 1000
        try:
            return _utc_day_ms(when[:10]) + clock_ms, _prices(fields[1:5]), 0.0
        except ValueError as exc:
            if isinstance(exc, _BadLine):
                raise
            raise _BadLine(f"timestamp {when!r}: {exc}") from None
    try:
        stamp = datetime.fromisoformat(fields[0])
    except ValueError:
        raise _BadLine(f"timestamp {fields[0]!r} is not YYYY-MM-DD HH:MM:SS+00:00") from None
    if stamp.tzinfo is None:
        raise _BadLine(f"timestamp {fields[0]!r} has no UTC offset")
    open_ms = round(stamp.astimezone(UTC).timestamp() * 1000)
    return open_ms, _prices(fields[1:5]), 0.0


def _histdata_row(text: str) -> tuple[int, Prices, float]:
    fields = text.split(";")
    if len(fields) != 6:
        raise _BadLine(f"{len(fields)} columns, HistData M1 rows have 6 (time;o;h;l;c;volume)")
    stamp = fields[0]
    if not re.fullmatch(r"\d{8} \d{6}", stamp):
        raise _BadLine(f"time {stamp!r} is not YYYYMMDD HHMMSS")
    try:
        est = datetime(
            int(stamp[0:4]), int(stamp[4:6]), int(stamp[6:8]),
            int(stamp[9:11]), int(stamp[11:13]), int(stamp[13:15]), tzinfo=UTC,
        )  # fmt: skip
    except ValueError as exc:
        raise _BadLine(f"time {stamp!r}: {exc}") from None
    volume = _number(fields[5], "volume")
    if volume < 0:
        raise _BadLine(f"volume {fields[5]!r} is negative")
    return round(est.timestamp() * 1000) + _EST_OFFSET_MS, _prices(fields[1:5]), volume


def _number(text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _BadLine(f"{column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise _BadLine(f"{column} {text!r} is not finite")
    return value


def _prices(fields: list[str]) -> Prices:
    o, h, lo, c = (
        _number(text, name)
        for text, name in zip(fields, ("open", "high", "low", "close"), strict=True)
    )
    return o, h, lo, c


def _check_prices(open_: float, high: float, low: float, close: float) -> None:
    if min(open_, high, low, close) <= 0:
        raise _BadLine("a price is not positive")
    if not low <= min(open_, close) <= max(open_, close) <= high:
        raise _BadLine(f"high {high} and low {low} do not contain open {open_} and close {close}")


def _bar(symbol: str, open_ms: int, prices: Prices, volume: float) -> OhlcvEvent:
    open_, high, low, close = prices
    close_ms = open_ms + MINUTE_MS - 1
    return OhlcvEvent(
        symbol=symbol,
        tf=Timeframe.M1,
        open_ms=open_ms,
        close_ms=close_ms,
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=int(volume) if volume.is_integer() else volume,
        tick_count=0,
        complete=True,
        source=Source.HISTORY,
        event_ts=close_ms,
        rev=0,
    )


def _clip(line: str) -> str:
    return line if len(line) <= _CLIP else line[:_CLIP] + "..."
