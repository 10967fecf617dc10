"""Readers of recorded tick files: real Dukascopy, TrueFX and HistData files, plus small files
written in tmp_path for the generic CSV and every error case."""

from __future__ import annotations

import datetime as dt
import lzma
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from fxconnector.core.errors import ConfigError
from fxconnector.core.model.tick import TickBatch
from fxconnector.core.time_geom import DAY_MS, HOUR_MS, MINUTE_MS, to_ms
from fxconnector.runtime.ingest.broker.replay.readers import (
    Candle,
    detect_format,
    point_size,
    read_dukascopy_candles,
    read_ticks,
)

TICK_DTYPE = np.dtype(
    [("ms", ">u4"), ("ask", ">u4"), ("bid", ">u4"), ("ask_vol", ">f4"), ("bid_vol", ">f4")]
)
CANDLE_DTYPE = np.dtype(
    [("s", ">u4"), ("open", ">u4"), ("close", ">u4"), ("low", ">u4"), ("high", ">u4"), ("v", ">f4")]
)
#: Monday 2019-02-04, stored under the zero-based month folder 2019/01/04.
EURUSD_DAY = dt.datetime(2019, 2, 4, tzinfo=dt.UTC)
EURUSD_DAY_TICKS = 136_741
GBPJPY_MONTH_TICKS = 1_298_479


def utc_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return to_ms(dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC))


def config_error(call: Callable[[], object]) -> str:
    """The message of the ConfigError `call` raises, checked to be one line."""
    with pytest.raises(ConfigError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def tick_bytes(rows: list[tuple[int, int, int, float, float]]) -> bytes:
    """Raw tick records (ms, ask points, bid points, ask volume, bid volume)."""
    return np.array(rows, dtype=TICK_DTYPE).tobytes()


def write_bi5(path: Path, payload: bytes, *, compress: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lzma.compress(payload, format=lzma.FORMAT_ALONE) if compress else payload)
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def assert_same(left: TickBatch, right: TickBatch) -> None:
    for name in ("ts_ms", "bid", "ask", "bid_volume", "ask_volume"):
        np.testing.assert_array_equal(getattr(left, name), getattr(right, name), err_msg=name)


# --- point size ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [("EURUSD", 1e-5), ("GBPJPY", 1e-3), ("USDJPY", 1e-3), ("XAUUSD", 1e-5), ("JPYUSD", 1e-5)],
)
def test_point_size_is_a_thousandth_only_for_pairs_quoted_in_jpy(
    symbol: str, expected: float
) -> None:
    assert point_size(symbol) == expected


# --- Dukascopy: EURUSD 2019-02-04 ------------------------------------------------------------


@pytest.fixture(scope="module")
def eurusd_day(shared_data: Path) -> TickBatch:
    return read_ticks(shared_data / "dukascopy", "EURUSD")


def test_eurusd_day_has_every_tick_of_that_utc_day(eurusd_day: TickBatch) -> None:
    day_ms = to_ms(EURUSD_DAY)
    assert len(eurusd_day) == EURUSD_DAY_TICKS
    assert eurusd_day.ts_ms[0] == day_ms + 994  # first record of 00h: offset 994 ms
    assert eurusd_day.ts_ms[-1] == day_ms + 23 * HOUR_MS + 3_597_992
    assert day_ms <= eurusd_day.ts_ms.min()
    assert eurusd_day.ts_ms.max() < day_ms + DAY_MS
    # Dukascopy writes each hour in time order, so file order is time order here.
    assert bool(np.all(np.diff(eurusd_day.ts_ms) >= 0))


def test_eurusd_prices_are_the_decimal_quotes_and_volumes_keep_their_side(
    eurusd_day: TickBatch,
) -> None:
    # Raw first record: ASK 114545, BID 114543 points; ask volume 1.0, bid volume 2.06 (float32).
    assert eurusd_day.ask[0] == 1.14545
    assert eurusd_day.bid[0] == 1.14543
    assert eurusd_day.bid_volume is not None
    assert eurusd_day.ask_volume is not None
    assert eurusd_day.ask_volume[0] == 1.0
    assert eurusd_day.bid_volume[0] == float(np.float32(2.06))
    assert eurusd_day.bid.min() == 1.14244
    assert eurusd_day.ask.max() == 1.14605
    # Not validated by the reader, but a swapped ASK/BID decode would break this at once.
    assert int(np.count_nonzero(eurusd_day.ask < eurusd_day.bid)) == 0


def test_sym_folder_as_path_reads_the_same_ticks(shared_data: Path, eurusd_day: TickBatch) -> None:
    from_sym_folder = read_ticks(shared_data / "dukascopy" / "EURUSD", "EURUSD", "dukascopy")
    assert from_sym_folder.symbol == "EURUSD"
    assert_same(from_sym_folder, eurusd_day)


def test_range_of_one_hour_holds_exactly_that_hour_file(
    shared_data: Path, eurusd_day: TickBatch
) -> None:
    start = to_ms(EURUSD_DAY) + 10 * HOUR_MS
    hour = read_ticks(shared_data / "dukascopy", "EURUSD", from_ms=start, to_ms=start + HOUR_MS)
    raw = lzma.decompress(
        (shared_data / "dukascopy/EURUSD/2019/01/04/10h_ticks.bi5").read_bytes(),
        format=lzma.FORMAT_ALONE,
    )
    records = np.frombuffer(raw, dtype=TICK_DTYPE)
    assert len(hour) == records.size
    np.testing.assert_array_equal(hour.ts_ms, start + records["ms"].astype(np.int64))
    np.testing.assert_array_equal(hour.bid, records["bid"] / 1e5)


def test_range_keeps_from_inclusive_and_to_exclusive(
    shared_data: Path, eurusd_day: TickBatch
) -> None:
    low, high = int(eurusd_day.ts_ms[40_000]), int(eurusd_day.ts_ms[41_000])
    window = read_ticks(shared_data / "dukascopy", "EURUSD", from_ms=low, to_ms=high)
    first = int(np.searchsorted(eurusd_day.ts_ms, low, side="left"))
    stop = int(np.searchsorted(eurusd_day.ts_ms, high, side="left"))
    assert window.ts_ms[0] == low
    assert window.ts_ms[-1] < high
    assert_same(window, eurusd_day.slice(first, stop))


# --- Dukascopy candles -----------------------------------------------------------------------


def minute_oracle(
    ts_ms: npt.NDArray[np.int64], price: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int64], list[npt.NDArray[np.float64]]]:
    """Traded minutes and their OHLC from one side's tick prices (open = first tick)."""
    minutes = ts_ms // MINUTE_MS * MINUTE_MS
    traded, first = np.unique(minutes, return_index=True)
    last = np.r_[first[1:] - 1, minutes.size - 1]
    ohlc = [
        price[first],
        np.maximum.reduceat(price, first),
        np.minimum.reduceat(price, first),
        price[last],
    ]
    return traded, ohlc


@pytest.mark.parametrize("side", ["BID", "ASK"])
def test_minute_candles_are_the_ohlc_of_that_sides_ticks(
    side: str, shared_data: Path, eurusd_day: TickBatch
) -> None:
    path = shared_data / f"dukascopy/EURUSD/2019/01/04/{side}_candles_min_1.bi5"
    candles = read_dukascopy_candles(path, "EURUSD", to_ms(EURUSD_DAY))
    assert len(candles) == 1440
    assert [c.open_ms for c in candles] == [to_ms(EURUSD_DAY) + i * MINUTE_MS for i in range(1440)]
    assert all(c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high for c in candles)
    price = eurusd_day.bid if side == "BID" else eurusd_day.ask
    traded, (opens, highs, lows, closes) = minute_oracle(eurusd_day.ts_ms, price)
    by_open = {c.open_ms: c for c in candles}
    assert traded.size == 1440  # every minute of this Monday traded
    assert [by_open[t].open for t in traded.tolist()] == opens.tolist()
    assert [by_open[t].high for t in traded.tolist()] == highs.tolist()
    assert [by_open[t].low for t in traded.tolist()] == lows.tolist()
    assert [by_open[t].close for t in traded.tolist()] == closes.tolist()


def test_minute_candle_volume_is_the_sum_of_that_sides_tick_volumes(
    shared_data: Path, eurusd_day: TickBatch
) -> None:
    path = shared_data / "dukascopy/EURUSD/2019/01/04/BID_candles_min_1.bi5"
    first = read_dukascopy_candles(path, "EURUSD", to_ms(EURUSD_DAY))[0]
    assert first == Candle(
        open_ms=to_ms(EURUSD_DAY),
        open=1.14543,
        high=1.1457,
        low=1.14542,
        close=1.14569,
        volume=float(np.float32(293.76)),
    )
    in_first_minute = eurusd_day.ts_ms < to_ms(EURUSD_DAY) + MINUTE_MS
    assert eurusd_day.bid_volume is not None
    assert math.isclose(
        first.volume, float(eurusd_day.bid_volume[in_first_minute].sum()), rel_tol=1e-6
    )


def test_hour_candles_of_february_aggregate_the_minute_candles(shared_data: Path) -> None:
    month_ms = utc_ms(2019, 2, 1)
    hours = read_dukascopy_candles(
        shared_data / "dukascopy/EURUSD/2019/01/BID_candles_hour_1.bi5", "EURUSD", month_ms
    )
    minutes = read_dukascopy_candles(
        shared_data / "dukascopy/EURUSD/2019/01/04/BID_candles_min_1.bi5",
        "EURUSD",
        to_ms(EURUSD_DAY),
    )
    assert len(hours) == 28 * 24
    assert hours[0].open_ms == month_ms
    assert hours[-1].open_ms == utc_ms(2019, 2, 28, 23)
    by_open = {c.open_ms: c for c in hours}
    for start in range(0, 1440, 60):
        chunk = minutes[start : start + 60]
        hour = by_open[chunk[0].open_ms]
        assert hour.open == chunk[0].open
        assert hour.close == chunk[-1].close
        assert hour.high == max(c.high for c in chunk)
        assert hour.low == min(c.low for c in chunk)


# --- Dukascopy: GBPJPY December 2012 ---------------------------------------------------------


@pytest.fixture(scope="module")
def gbpjpy_month(shared_data: Path) -> TickBatch:
    return read_ticks(shared_data / "dukascopy", "GBPJPY")


@pytest.mark.slow
def test_gbpjpy_month_has_every_tick_of_december_2012(gbpjpy_month: TickBatch) -> None:
    assert len(gbpjpy_month) == GBPJPY_MONTH_TICKS
    # The month folder 2012/11 is December: the week opens Sunday 2 Dec in the 22:00 hour.
    assert gbpjpy_month.ts_ms[0] == utc_ms(2012, 12, 2, 22, 0, 20) + 449
    assert gbpjpy_month.ts_ms[-1] == utc_ms(2012, 12, 31, 21, 59, 0) + 183
    assert bool(np.all(np.diff(gbpjpy_month.ts_ms) >= 0))


@pytest.mark.slow
def test_gbpjpy_prices_use_the_jpy_point(gbpjpy_month: TickBatch) -> None:
    assert gbpjpy_month.bid[0] == 131.962  # raw BID 131962 points x 1e-3
    assert gbpjpy_month.ask[0] == 131.988
    assert gbpjpy_month.bid.min() == 131.555
    assert gbpjpy_month.ask.max() == 141.056


@pytest.mark.slow
def test_gbpjpy_empty_hour_files_leave_no_ticks(gbpjpy_month: TickBatch) -> None:
    def count(start: int, end: int) -> int:
        return int(np.count_nonzero((gbpjpy_month.ts_ms >= start) & (gbpjpy_month.ts_ms < end)))

    # 744 hour files, 252 of them empty.
    assert np.unique(gbpjpy_month.ts_ms // HOUR_MS).size == 744 - 252
    for friday in (7, 14, 28):
        assert count(utc_ms(2012, 12, friday, 22), utc_ms(2012, 12, friday + 2, 22)) == 0
    # Sunday 23 Dec: one quote arrives 2.3 s before the 22:00 open.
    assert count(utc_ms(2012, 12, 21, 22), utc_ms(2012, 12, 23, 22)) == 1
    assert count(utc_ms(2012, 12, 21, 22), utc_ms(2012, 12, 23, 21, 59, 57)) == 0
    # Christmas: the last quote is at 08:00:03.342, trading resumes at 22:01:09.771.
    assert count(utc_ms(2012, 12, 25, 8, 0, 4), utc_ms(2012, 12, 25, 22, 1, 9)) == 0
    assert count(utc_ms(2012, 12, 25, 8), utc_ms(2012, 12, 25, 9)) == 8


@pytest.mark.slow
def test_gbpjpy_range_equals_the_same_rows_of_the_whole_month(
    shared_data: Path, gbpjpy_month: TickBatch
) -> None:
    start, end = utc_ms(2012, 12, 10, 13, 30), utc_ms(2012, 12, 12, 2, 15)
    window = read_ticks(shared_data / "dukascopy" / "GBPJPY", "GBPJPY", from_ms=start, to_ms=end)
    keep = (gbpjpy_month.ts_ms >= start) & (gbpjpy_month.ts_ms < end)
    assert len(window) == int(np.count_nonzero(keep)) > 50_000
    np.testing.assert_array_equal(window.ts_ms, gbpjpy_month.ts_ms[keep])
    np.testing.assert_array_equal(window.ask, gbpjpy_month.ask[keep])


# --- Dukascopy: trees written in tmp_path ----------------------------------------------------


def test_month_folders_count_from_zero_and_hours_come_in_time_order(tmp_path: Path) -> None:
    sym = tmp_path / "USDJPY"
    write_bi5(sym / "2019/11/31/00h_ticks.bi5", tick_bytes([(5, 109_602, 109_590, 1.5, 2.5)]))
    write_bi5(sym / "2019/00/31/23h_ticks.bi5", tick_bytes([(7, 108_900, 108_880, 1.0, 1.0)]))
    write_bi5(sym / "2019/00/31/05h_ticks.bi5", b"")  # an empty hour: 0 bytes compressed
    (sym / "2019/00/31/22h_ticks.bi5").write_bytes(b"")  # an empty hour: a 0-byte file
    write_bi5(sym / "2019/00/31/BID_candles_min_1.bi5", b"not a tick file")
    ticks = read_ticks(tmp_path, "USDJPY")
    assert ticks.ts_ms.tolist() == [utc_ms(2019, 1, 31, 23) + 7, utc_ms(2019, 12, 31) + 5]
    assert ticks.ask.tolist() == [108.9, 109.602]
    assert ticks.bid.tolist() == [108.88, 109.59]
    assert ticks.bid_volume is not None
    assert ticks.bid_volume.tolist() == [1.0, 2.5]


def test_duplicate_times_in_a_file_are_kept_in_file_order(tmp_path: Path) -> None:
    rows = [(9, 114_545, 114_543, 1.0, 1.0), (9, 114_547, 114_549, 1.0, 1.0), (3, 1, 2, 0.0, 0.0)]
    write_bi5(tmp_path / "EURUSD/2019/01/04/00h_ticks.bi5", tick_bytes(rows))
    ticks = read_ticks(tmp_path, "EURUSD")
    day = to_ms(EURUSD_DAY)
    assert ticks.ts_ms.tolist() == [day + 9, day + 9, day + 3]
    assert ticks.bid.tolist() == [1.14543, 1.14549, 0.00002]  # ask < bid and tiny prices pass


def test_hour_files_outside_the_range_are_never_opened(tmp_path: Path) -> None:
    day = tmp_path / "EURUSD/2019/01/04"
    write_bi5(day / "00h_ticks.bi5", tick_bytes([(1, 114_545, 114_543, 1.0, 1.0)]))
    write_bi5(day / "01h_ticks.bi5", b"garbage, not LZMA", compress=False)
    inside = read_ticks(tmp_path, "EURUSD", to_ms=to_ms(EURUSD_DAY) + HOUR_MS)
    assert len(inside) == 1
    assert "01h_ticks.bi5" in config_error(lambda: read_ticks(tmp_path, "EURUSD"))


def bad_tree_cases() -> list[tuple[str, Callable[[Path], object], str]]:
    one_tick = tick_bytes([(1, 114_545, 114_543, 1.0, 1.0)])
    compressed = lzma.compress(one_tick * 50, format=lzma.FORMAT_ALONE)
    hour = "EURUSD/2019/01/04/00h_ticks.bi5"
    return [
        ("truncated", lambda r: write_bi5(r / hour, compressed[:-20], compress=False), "truncated"),
        (
            "not lzma",
            lambda r: write_bi5(r / hour, b"garbage!" * 8, compress=False),
            "not valid LZMA",
        ),
        ("junk after", lambda r: write_bi5(r / hour, compressed + b"xx", compress=False), "junk"),
        ("record size", lambda r: write_bi5(r / hour, one_tick + b"\x00" * 7), "27 decompressed"),
        ("unreadable", lambda r: (r / hour).mkdir(parents=True), "cannot be read"),
        (
            "past the hour",
            lambda r: write_bi5(r / hour, tick_bytes([(HOUR_MS, 1, 1, 0.0, 0.0)])),
            "3600000 ms",
        ),
    ]


@pytest.mark.parametrize(
    ("make", "expected"),
    [case[1:] for case in bad_tree_cases()],
    ids=[case[0] for case in bad_tree_cases()],
)
def test_a_bad_hour_file_is_an_error_naming_it(
    make: Callable[[Path], object], expected: str, tmp_path: Path
) -> None:
    make(tmp_path)
    message = config_error(lambda: read_ticks(tmp_path, "EURUSD"))
    assert "EURUSD/2019/01/04/00h_ticks.bi5" in message
    assert expected in message


def test_a_folder_that_is_no_real_hour_is_an_error(tmp_path: Path) -> None:
    # Month folder 12 would be a thirteenth month.
    write_bi5(tmp_path / "EURUSD/2019/12/04/00h_ticks.bi5", tick_bytes([(1, 1, 1, 0.0, 0.0)]))
    assert "EURUSD/2019/12/04/00h_ticks.bi5" in config_error(lambda: read_ticks(tmp_path, "EURUSD"))


def test_a_tree_without_the_symbol_folder_is_an_error(tmp_path: Path) -> None:
    write_bi5(tmp_path / "EURUSD/2019/01/04/00h_ticks.bi5", tick_bytes([(1, 1, 1, 0.0, 0.0)]))
    message = config_error(lambda: read_ticks(tmp_path, "GBPJPY"))
    assert str(tmp_path) in message
    assert "GBPJPY" in message


def test_a_tree_of_empty_hours_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "EURUSD/2019/01/05").mkdir(parents=True)
    (tmp_path / "EURUSD/2019/01/05/00h_ticks.bi5").write_bytes(b"")
    message = config_error(lambda: read_ticks(tmp_path, "EURUSD"))
    assert message == f"{tmp_path}: no EURUSD ticks"


def test_a_range_without_ticks_is_an_error(tmp_path: Path) -> None:
    write_bi5(tmp_path / "EURUSD/2019/01/04/00h_ticks.bi5", tick_bytes([(1, 1, 1, 0.0, 0.0)]))
    start = to_ms(EURUSD_DAY) + 2
    message = config_error(lambda: read_ticks(tmp_path, "EURUSD", from_ms=start))
    assert message == f"{tmp_path}: no EURUSD ticks in [2019-02-04T00:00:00.002Z, +inf)"


def test_the_dukascopy_format_needs_a_folder_and_a_bi5_file_alone_is_refused(
    tmp_path: Path,
) -> None:
    hour = write_bi5(tmp_path / "EURUSD/2019/01/04/00h_ticks.bi5", tick_bytes([(1, 1, 1, 0, 0)]))
    assert str(hour) in config_error(lambda: read_ticks(hour, "EURUSD", "dukascopy"))
    assert str(hour) in config_error(lambda: read_ticks(hour, "EURUSD"))


def test_bad_candle_files_are_errors_naming_them(tmp_path: Path) -> None:
    candle = np.array([(0, 5, 6, 4, 7, 1.0)], dtype=CANDLE_DTYPE).tobytes()
    short = write_bi5(tmp_path / "BID_candles_min_1.bi5", candle[:-4])
    assert str(short) in config_error(lambda: read_dukascopy_candles(short, "EURUSD", 0))
    empty = tmp_path / "ASK_candles_min_1.bi5"
    empty.write_bytes(b"")
    assert config_error(lambda: read_dukascopy_candles(empty, "EURUSD", 0)) == (
        f"{empty}: no candles"
    )
    missing = tmp_path / "nothing.bi5"
    assert str(missing) in config_error(lambda: read_dukascopy_candles(missing, "EURUSD", 0))


def test_candle_fields_follow_the_open_close_low_high_record_order(tmp_path: Path) -> None:
    rows = [(60, 109_500, 109_600, 109_400, 109_700, 12.5)]  # s, OPEN, CLOSE, LOW, HIGH, volume
    path = write_bi5(tmp_path / "BID_candles_min_1.bi5", np.array(rows, CANDLE_DTYPE).tobytes())
    (candle,) = read_dukascopy_candles(path, "USDJPY", 1_000_000)
    assert candle == Candle(1_060_000, open=109.5, high=109.7, low=109.4, close=109.6, volume=12.5)


# --- TrueFX and HistData ---------------------------------------------------------------------


def test_truefx_file_keeps_all_ticks_and_duplicate_times(shared_data: Path) -> None:
    path = shared_data / "truefx" / "USDJPY_ticks.csv"
    assert detect_format(path) == "truefx"
    ticks = read_ticks(path, "USDJPY")
    assert len(ticks) == 1000
    assert len(ticks) - np.unique(ticks.ts_ms).size == 7
    assert ticks.ts_ms[0] == utc_ms(2013, 1, 1, 22, 0, 0) + 295
    assert ticks.ts_ms[-1] == utc_ms(2013, 1, 1, 22, 35, 13) + 494
    assert (ticks.bid[0], ticks.ask[0]) == (86.655, 86.728)
    assert ticks.bid_volume is None
    assert ticks.ask_volume is None
    same = np.flatnonzero(np.diff(ticks.ts_ms) == 0)
    # The duplicates carry different quotes, so both rows are real data.
    assert bool(
        np.all((ticks.bid[same] != ticks.bid[same + 1]) | (ticks.ask[same] != ticks.ask[same + 1]))
    )


def test_truefx_pair_must_match_the_symbol(shared_data: Path) -> None:
    path = shared_data / "truefx" / "USDJPY_ticks.csv"
    message = config_error(lambda: read_ticks(path, "EURJPY"))
    assert message.startswith(f"{path}:1: pair 'USD/JPY' is not the symbol EURJPY")


def test_histdata_times_are_new_york_standard_time_shifted_to_utc(shared_data: Path) -> None:
    path = shared_data / "histdata" / "quote_tick_data.csv"
    assert detect_format(path) == "histdata"
    first_line = path.read_text(encoding="utf-8").split("\n", 1)[0]
    assert first_line == "20200101 170000065,1.121200,1.121720,0"
    ticks = read_ticks(path, "EURUSD")
    assert len(ticks) == 9500
    assert ticks.ts_ms[0] == utc_ms(2020, 1, 1, 17, 0, 0) + 65 + 5 * HOUR_MS
    assert ticks.ts_ms[-1] == utc_ms(2020, 1, 2, 4, 0, 52) + 125
    assert (ticks.bid[0], ticks.ask[0]) == (1.1212, 1.12172)
    assert ticks.bid_volume is None


def test_histdata_range_filter_uses_utc(shared_data: Path) -> None:
    path = shared_data / "histdata" / "quote_tick_data.csv"
    ticks = read_ticks(path, "EURUSD", from_ms=utc_ms(2020, 1, 2), to_ms=utc_ms(2020, 1, 2, 1))
    whole = read_ticks(path, "EURUSD")
    keep = (whole.ts_ms >= utc_ms(2020, 1, 2)) & (whole.ts_ms < utc_ms(2020, 1, 2, 1))
    assert len(ticks) == int(np.count_nonzero(keep)) > 0
    np.testing.assert_array_equal(ticks.ts_ms, whole.ts_ms[keep])


def test_detect_format_takes_a_folder_for_a_dukascopy_tree(shared_data: Path) -> None:
    assert detect_format(shared_data / "dukascopy") == "dukascopy"
    assert detect_format(shared_data / "dukascopy" / "GBPJPY") == "dukascopy"


# --- generic CSV -----------------------------------------------------------------------------


def test_generic_csv_with_header_iso_times_and_volumes(tmp_path: Path) -> None:
    path = write_text(
        tmp_path / "ticks.csv",
        "ts,bid,ask,bid_volume,ask_volume\n"
        "2019-02-04T00:00:00.994Z,1.14543,1.14545,2.06,1\n"
        "2019-02-04T02:00:01.5+02:00,1.14544,1.14546,1.5,0.75\n"
        "2019-02-04 00:00:02.123456,nan,1.14546,0,0\n",
    )
    assert detect_format(path) == "csv"
    ticks = read_ticks(path, "EURUSD")
    day = to_ms(EURUSD_DAY)
    assert ticks.ts_ms.tolist() == [day + 994, day + 1500, day + 2123]  # naive = UTC
    assert ticks.bid[:2].tolist() == [1.14543, 1.14544]
    assert math.isnan(ticks.bid[2])
    assert ticks.bid_volume is not None
    assert ticks.ask_volume is not None
    assert ticks.bid_volume.tolist() == [2.06, 1.5, 0.0]
    assert ticks.ask_volume.tolist() == [1.0, 0.75, 0.0]


def test_generic_csv_with_epoch_ms_no_header_keeps_file_order(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_bytes(
        b"\xef\xbb\xbf1549238400994,1.14543,1.14545\r\n\r\n"
        b"1549238400000,1.2,1.1\r\n1549238400000,1.3,1.1\r\n"
    )
    ticks = read_ticks(path, "EURUSD", "csv")
    assert ticks.ts_ms.tolist() == [1_549_238_400_994, 1_549_238_400_000, 1_549_238_400_000]
    assert ticks.bid.tolist() == [1.14543, 1.2, 1.3]
    assert ticks.ask.tolist() == [1.14545, 1.1, 1.1]
    assert ticks.bid_volume is None
    assert ticks.ask_volume is None


def test_generic_csv_range_filter(tmp_path: Path) -> None:
    path = write_text(tmp_path / "t.csv", "3,1.1,1.2\n1,1.1,1.2\n2,1.1,1.2\n4,1.1,1.2\n")
    assert read_ticks(path, "EURUSD", from_ms=2, to_ms=4).ts_ms.tolist() == [3, 2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ts,bid,ask\n1,1.1,1.2\n\n2,1.1\n", ":4: 2 columns where every row has 3"),
        ("1,1.1,1.2,5,6\n2,1.1,1.2\n", ":2: 3 columns where every row has 5"),
        ("2019-02-04T00:00:00Z,1.1,1.2\nyesterday,1.1,1.2\n", ":2: time 'yesterday' is neither"),
        ("2019-02-04T00:00:00Z,1.1,1.2\n2019-02-30T00:00:00Z,1.1,1.2\n", ":2: time"),
        ("1,1.1,1.2\n2,one,1.2\n", ":2: bid 'one' is not a number"),
        ("ts,ask,bid\n1,1.2,1.1\n", ":1: header 'ts,ask,bid' must name the columns ts,bid,ask"),
        ("time,bid,ask,volume\n1,1.1,1.2,3\n", "cannot detect the format"),
        ("hello world\n", "cannot detect the format"),
        ("\n\n  \n", "empty file"),
        ("ts,bid,ask\n", "no EURUSD ticks"),
    ],
)
def test_bad_generic_csv_is_an_error_naming_file_and_line(
    text: str, expected: str, tmp_path: Path
) -> None:
    path = write_text(tmp_path / "bad.csv", text)
    message = config_error(lambda: read_ticks(path, "EURUSD"))
    assert message.startswith(str(path))
    assert expected in message


def test_bad_truefx_and_histdata_rows_name_the_line(tmp_path: Path) -> None:
    truefx = write_text(
        tmp_path / "truefx.csv",
        "USD/JPY,20130101 22:00:00.295,86.655,86.728\nUSD/JPY,20130132 22:00:00.295,86.6,86.7\n",
    )
    assert f"{truefx}:2: date 2013-01-32 does not exist" in config_error(
        lambda: read_ticks(truefx, "USDJPY")
    )
    histdata = write_text(
        tmp_path / "histdata.csv", "20200101 170000065,1.1212,1.12172,0\n20200101 250000000,1,1,0\n"
    )
    assert f"{histdata}:2: time of day 25:00:00 does not exist" in config_error(
        lambda: read_ticks(histdata, "EURUSD")
    )


def test_a_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"1,1.1,1.2\n2,1.1,1.2 \xe9\n")
    assert config_error(lambda: read_ticks(path, "EURUSD")) == f"{path}: not UTF-8 text (byte 20)"


# --- arguments -------------------------------------------------------------------------------


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert (
        config_error(lambda: read_ticks(missing, "EURUSD")) == f"{missing}: no such file or folder"
    )
    assert str(missing) in config_error(lambda: detect_format(missing))


def test_an_unknown_format_name_is_an_error(tmp_path: Path) -> None:
    message = config_error(lambda: read_ticks(tmp_path, "EURUSD", "parquet"))  # type: ignore[arg-type]
    assert message.startswith(f"{tmp_path}: unknown tick file format 'parquet'")


def test_csv_formats_need_a_file(tmp_path: Path) -> None:
    assert str(tmp_path) in config_error(lambda: read_ticks(tmp_path, "EURUSD", "truefx"))


@pytest.mark.parametrize("symbol", ["eurusd", "EU", "EUR/USD", "EURUSD\n", "", "1EURUSD"])
def test_a_malformed_symbol_is_an_error(symbol: str, tmp_path: Path) -> None:
    assert repr(symbol) in config_error(lambda: read_ticks(tmp_path, symbol))


def test_an_empty_range_is_an_error(tmp_path: Path) -> None:
    message = config_error(lambda: read_ticks(tmp_path, "EURUSD", from_ms=5, to_ms=5))
    assert message.startswith(f"{tmp_path}: empty range")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"PK\x03\x04\x14\x00\x08\x00 a zip", "a zip archive, not a tick file"),
        (b"\x00\x01\x02\xff\xfe\x80 binary\n", "not a text file (binary content)"),
        (b"timestamp,open,high,low,close\n2012-01-02 03:09:00+00:00,1,1,1,1\n", "1m candles"),
        (b"20190204 000000;1.1;1.2;1.0;1.1;0\n", "1m candles"),
    ],
)
def test_zips_binary_files_and_candle_files_are_one_line_without_their_bytes(
    content: bytes, expected: str, tmp_path: Path
) -> None:
    path = tmp_path / "input.csv"
    path.write_bytes(content)
    message = config_error(lambda: read_ticks(path, "EURUSD"))
    assert message.startswith(str(path))
    assert expected in message
    assert "\n" not in message
    assert message.isprintable()
