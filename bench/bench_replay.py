"""Replay and derivation against dataframe scripts producing the identical bars (issue 12).

- replay end to end: `fxconnector replay`'s work on the GBPJPY December 2012 month (1.3M ticks,
  744 `.bi5` hour files): decoding, tick rails, 1m finals, every higher timeframe, into a
  fresh JSONL store, closed (flushed). Baselines: a pandas script and a polars script that
  decode the same files, drop the ticks in closed minutes (the calendar's sessions, as the
  rails do), build 1m bars and nest the higher timeframes with the same trading-day alignment
  (New York 17:00). Their bars are checked equal to what the store holds.
- the same after the decode (ticks already in memory, on both sides): the LZMA decode is the
  same work for both and most of the pandas script's time, so this row shows the rest.
- 1m -> every higher timeframe on the FXCM GBPUSD 2012 year (368k bars): `compose_all` vs
  polars doing the same nesting (3m, 5m from 1m; 15m from 5m; ... 1d from 4h) with the same
  trading-day alignment, outputs checked equal.

Each pair runs A/B interleaved in this process, several rounds; the table shows median times
and the per-round ratios' range. Run alone: `python -m bench.bench_replay`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import lzma
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from bench.data import fxcm_year, shared_data
from bench.runner import Row, interleaved, print_table
from fxconnector.config.calendars import load_calendar
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.builders.vector import BarColumns, compose_all
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.model.tick import TickBatch
from fxconnector.core.time_geom import MINUTE_MS, TIMEFRAMES, Timeframe, to_ms
from fxconnector.runtime.ingest.broker.replay.readers import read_ticks
from fxconnector.runtime.ingest.replay import run_replay
from fxconnector.runtime.store.ssot_jsonl import JsonlStore

try:  # a bench extra: the rows against polars are skipped, saying so, without it
    import polars as pl
except ImportError:  # pragma: no cover - depends on the environment
    pl = None  # type: ignore[assignment,unused-ignore]

NOW_MS: Final = to_ms(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
SYMBOL: Final = "GBPJPY"
#: The replay's default timeframes (BarsConfig): what `fxconnector replay` writes.
REPLAY_TFS: Final = (
    Timeframe.M1,
    Timeframe.M5,
    Timeframe.M15,
    Timeframe.M30,
    Timeframe.H1,
    Timeframe.H4,
    Timeframe.D1,
)
HIGHER: Final = tuple(tf for tf in TIMEFRAMES if tf is not Timeframe.M1)
#: Each timeframe from the finest one nesting in it, as `compose_all` does.
NESTS_IN: Final = {
    Timeframe.M3: Timeframe.M1,
    Timeframe.M5: Timeframe.M1,
    Timeframe.M15: Timeframe.M5,
    Timeframe.M30: Timeframe.M15,
    Timeframe.H1: Timeframe.M30,
    Timeframe.H4: Timeframe.H1,
    Timeframe.D1: Timeframe.H4,
}
NEW_YORK: Final = "America/New_York"
ROUNDS_REPLAY: Final = 5
ROUNDS_COMPOSE: Final = 7
_TICK: Final = np.dtype(
    [("ms", ">u4"), ("ask", ">u4"), ("bid", ">u4"), ("ask_vol", ">f4"), ("bid_vol", ">f4")]
)

#: Per timeframe: open_ms, open, high, low, close, tick count.
Bars = dict[Timeframe, tuple[npt.NDArray[Any], ...]]


def run() -> list[Row]:
    data = shared_data()
    if data is None:
        print("bench_replay: ../shared/data not found; set FXCONNECTOR_SHARED_DATA")
        return []
    profile = load_calendar("fx_ny", now_ms=NOW_MS)
    rows = _replay_rows(data / "dukascopy", profile.for_symbol(SYMBOL))
    rows.extend(_compose_rows(data, profile.default))
    return rows


# -- replay end to end --------------------------------------------------------------------


def _replay_rows(root: Path, calendar: TradingCalendar) -> list[Row]:
    scratch = Path(tempfile.mkdtemp(prefix="fxbench-replay"))
    stores: list[Path] = []

    def ours() -> None:
        batch = read_ticks(root, SYMBOL, "dukascopy")
        path = scratch / str(len(stores))
        stores.append(path)
        _replay_into(path, batch, calendar)

    decoded = read_ticks(root, SYMBOL, "dukascopy")
    script_decoded = _decode(root / SYMBOL)

    def ours_decoded() -> None:
        path = scratch / str(len(stores))
        stores.append(path)
        _replay_into(path, decoded, calendar)

    try:
        ours()
        stored = _stored_bars(stores[0])
        ticks = int(stored[Timeframe.M1][5].sum())
        scripts: list[tuple[str, Callable[[], Bars]]] = [
            ("pandas script", lambda: _pandas_script(root / SYMBOL, calendar))
        ]
        if pl is None:
            print("bench_replay: polars not installed (pip install -e '.[bench]'); row skipped")
        else:
            scripts.append(("polars script", lambda: _polars_script(root / SYMBOL, calendar)))
        rows = []
        for name, script in scripts:
            _check_equal(stored, script(), name)
            timing = interleaved(ours, script, ROUNDS_REPLAY)
            rows.append(timing.row(f"replay {SYMBOL} Dec 2012 end to end", ticks, "ticks", name))
        # Where the time goes: both sides after their decode (LZMA is the same work for both).
        _check_equal(stored, _pandas_bars(*script_decoded, calendar), "pandas after decode")
        timing = interleaved(ours_decoded, lambda: _pandas_bars(*script_decoded, calendar), 5)
        rows.append(
            timing.row("replay after decode (ticks in memory)", ticks, "ticks", "pandas, same")
        )
        return rows
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _replay_into(path: Path, batch: TickBatch, calendar: TradingCalendar) -> None:
    """`fxconnector replay`'s work on decoded ticks: a fresh store, the replay, closed."""
    # As the CLI opens it: the store flushes at the replay's 1 s ack interval.
    store = JsonlStore(path, fsync_interval_ms=1000)
    store.open()
    try:
        asyncio.run(
            run_replay(
                batch,
                calendar=calendar,
                timeframes=REPLAY_TFS,
                spec=BarSpec(),
                store=store,
                now_ms=NOW_MS,
            )
        )
    finally:
        store.close()


def _stored_bars(path: Path) -> Bars:
    store = JsonlStore(path)
    store.open()
    try:
        out: Bars = {}
        for tf in REPLAY_TFS:
            bars = list(store.bars(SYMBOL, tf))
            out[tf] = (
                np.asarray([b.open_ms for b in bars], dtype=np.int64),
                np.asarray([b.open for b in bars]),
                np.asarray([b.high for b in bars]),
                np.asarray([b.low for b in bars]),
                np.asarray([b.close for b in bars]),
                np.asarray([b.tick_count for b in bars], dtype=np.int64),
            )
        return out
    finally:
        store.close()


def _check_equal(ours: Bars, theirs: Bars, name: str) -> None:
    for tf in ours:
        for column, (a, b) in enumerate(zip(ours[tf], theirs[tf], strict=True)):
            if not np.array_equal(a, b):
                raise RuntimeError(f"{name}: {tf.value} column {column} differs from ours")


def _decode(sym_dir: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """What a script does with the hour files: LZMA, records, bid prices (JPY: 3 decimals)."""
    stamps, bids = [], []
    for path in sorted(sym_dir.glob("*/*/*/*h_ticks.bi5")):
        raw = path.read_bytes()
        if not raw:
            continue
        records = np.frombuffer(lzma.decompress(raw, format=lzma.FORMAT_ALONE), dtype=_TICK)
        year, month0, day, hour = path.relative_to(sym_dir).parts
        start = dt.datetime(int(year), int(month0) + 1, int(day), int(hour[:2]), tzinfo=dt.UTC)
        stamps.append(to_ms(start) + records["ms"].astype(np.int64))
        bids.append(records["bid"].astype(np.float64) / 1000.0)
    return np.concatenate(stamps), np.concatenate(bids)


def _pandas_script(sym_dir: Path, calendar: TradingCalendar) -> Bars:
    return _pandas_bars(*_decode(sym_dir), calendar)


def _pandas_bars(
    ts: npt.NDArray[np.int64], bid: npt.NDArray[np.float64], calendar: TradingCalendar
) -> Bars:
    """The pandas script after its decode: rails, 1m bars, the higher timeframes."""
    keep = calendar.is_open_array(ts)  # the rails drop ticks in closed minutes
    frame = pd.DataFrame({"minute": ts[keep] - ts[keep] % MINUTE_MS, "price": bid[keep]})
    m1 = frame.groupby("minute", sort=True)["price"].agg(["first", "max", "min", "last", "size"])
    m1.columns = pd.Index(["open", "high", "low", "close", "ticks"])
    done = {Timeframe.M1: m1}
    for tf in REPLAY_TFS[1:]:
        source = done[_finest_done(tf, done)]
        opens = source.index.to_numpy()
        key = _pandas_bucket(opens, tf)
        done[tf] = source.groupby(key, sort=False).agg(
            open=("open", "first"),
            high=("high", "max"),
            low=("low", "min"),
            close=("close", "last"),
            ticks=("ticks", "sum"),
        )
    return {tf: _frame_columns(done[tf]) for tf in REPLAY_TFS}


def _finest_done(tf: Timeframe, done: dict[Timeframe, Any]) -> Timeframe:
    source = NESTS_IN[tf]
    while source not in done:
        source = NESTS_IN[source]
    return source


def _pandas_bucket(opens: npt.NDArray[np.int64], tf: Timeframe) -> npt.NDArray[np.int64]:
    if not tf.session_aligned:
        return opens - opens % tf.ms
    # The trading day starts at 17:00 New York: shift by 7 h, take the local date, shift back.
    local = pd.to_datetime(opens, unit="ms", utc=True).tz_convert(NEW_YORK).tz_localize(None)
    start = (local + pd.Timedelta(hours=7)).floor("D") - pd.Timedelta(hours=7)
    day: npt.NDArray[np.int64] = (
        start.tz_localize(NEW_YORK).tz_convert("UTC").as_unit("ms").asi8.astype(np.int64)
    )
    return day + (opens - day) // tf.ms * tf.ms


def _frame_columns(frame: pd.DataFrame) -> tuple[npt.NDArray[Any], ...]:
    return (
        frame.index.to_numpy().astype(np.int64),
        frame["open"].to_numpy(),
        frame["high"].to_numpy(),
        frame["low"].to_numpy(),
        frame["close"].to_numpy(),
        frame["ticks"].to_numpy().astype(np.int64),
    )


def _polars_script(sym_dir: Path, calendar: TradingCalendar) -> Bars:
    assert pl is not None
    ts, bid = _decode(sym_dir)
    keep = calendar.is_open_array(ts)
    ticks = pl.DataFrame({"ts": ts[keep], "price": bid[keep]})
    m1 = (
        ticks.group_by((pl.col("ts") - pl.col("ts") % MINUTE_MS).alias("open_ms"))
        .agg(
            pl.col("price").first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"),
            pl.len().cast(pl.Int64).alias("ticks"),
        )
        .sort("open_ms")
    )
    done = _polars_nest(m1, REPLAY_TFS[1:], pl.col("ticks").sum())
    names = ("open_ms", "open", "high", "low", "close")
    return {
        tf: (
            *(done[tf][name].to_numpy() for name in names),
            done[tf]["ticks"].to_numpy().astype(np.int64),
        )
        for tf in REPLAY_TFS
    }


def _polars_nest(m1: Any, timeframes: tuple[Timeframe, ...], *extra: Any) -> dict[Timeframe, Any]:
    """Each timeframe from the finest one nesting in it; 4h and 1d on the trading day."""
    assert pl is not None
    done = {Timeframe.M1: m1}
    for tf in timeframes:
        source = done[_finest_done(tf, done)]
        done[tf] = (
            source.group_by(_polars_bucket(tf).alias("bucket"), maintain_order=True)
            .agg(
                pl.col("open").first(),
                pl.col("high").max(),
                pl.col("low").min(),
                pl.col("close").last(),
                *extra,
            )
            .rename({"bucket": "open_ms"})
        )
    return done


def _polars_bucket(tf: Timeframe) -> Any:
    assert pl is not None
    opens = pl.col("open_ms")
    if not tf.session_aligned:
        return opens - opens % tf.ms
    day = (
        opens.cast(pl.Datetime("ms", "UTC"))
        .dt.convert_time_zone(NEW_YORK)
        .dt.replace_time_zone(None)
        .dt.offset_by("7h")
        .dt.truncate("1d")
        .dt.offset_by("-7h")
        .dt.replace_time_zone(NEW_YORK)
        .dt.convert_time_zone("UTC")
        .dt.epoch("ms")
    )
    return day + (opens - day) // tf.ms * tf.ms


# -- 1m -> every higher timeframe -----------------------------------------------------------


def _compose_rows(data: Path, calendar: TradingCalendar) -> list[Row]:
    if pl is None:
        print("bench_replay: polars not installed (pip install -e '.[bench]'); row skipped")
        return []
    opens, ohlc = fxcm_year(data / "fxcm" / "fxcm-gbpusd-m1-bid-2012.csv.zip")
    zeros = np.zeros(opens.size, dtype=np.int64)
    o, h, lo, c = (ohlc[:, i].copy() for i in range(4))
    bars = BarColumns(opens, o, h, lo, c, zeros, zeros, opens + 59_999)
    m1 = pl.DataFrame({"open_ms": opens, "open": o, "high": h, "low": lo, "close": c})

    def ours() -> dict[Timeframe, BarColumns]:
        return compose_all(bars, HIGHER, calendar)

    def polars_nested() -> dict[Timeframe, Any]:
        return _polars_nest(m1, HIGHER)

    mine, theirs = ours(), polars_nested()
    for tf in HIGHER:
        for name in ("open_ms", "open", "high", "low", "close"):
            if not np.array_equal(getattr(mine[tf], name), theirs[tf][name].to_numpy()):
                raise RuntimeError(f"polars nested: {tf.value} {name} differs from compose_all")
    timing = interleaved(ours, polars_nested, ROUNDS_COMPOSE)
    return [
        timing.row(
            "1m -> 7 higher tfs, FXCM GBPUSD 2012",
            opens.size,
            "bars",
            "polars nested, trading day",
        )
    ]


if __name__ == "__main__":
    print_table(run())
