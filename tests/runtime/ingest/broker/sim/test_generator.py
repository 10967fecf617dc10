"""The sim tick generator: deterministic, calendar-aware, FX-like."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from fxconnector.core.errors import ConfigError, ContractViolation
from fxconnector.core.model.tick import TickBatch
from fxconnector.core.time_geom import HOUR_MS, MINUTE_MS, to_ms
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator, symbol_profile
from tests.conftest import calendar_profile

SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return to_ms(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC))


WEDNESDAY = utc(2024, 3, 6)  # fx_ny open all day


def generator(seed: int = 42, profile: str = "fx_ny", ticks_per_minute: int = 60) -> TickGenerator:
    calendars = calendar_profile(profile)
    return TickGenerator(
        seed, {s: calendars.for_symbol(s) for s in SYMBOLS}, ticks_per_minute=ticks_per_minute
    )


def columns(batch: TickBatch) -> tuple[bytes, ...]:
    assert batch.bid_volume is not None
    assert batch.ask_volume is not None
    return (
        batch.ts_ms.tobytes(),
        batch.bid.tobytes(),
        batch.ask.tobytes(),
        batch.bid_volume.tobytes(),
        batch.ask_volume.tobytes(),
    )


def concat(batches: list[TickBatch]) -> tuple[bytes, ...]:
    parts = [columns(b) for b in batches]
    return tuple(b"".join(column) for column in zip(*parts, strict=True))


def test_same_seed_gives_the_same_bytes_whatever_was_generated_before() -> None:
    minutes = [WEDNESDAY + k * 7 * MINUTE_MS for k in range(0, 200, 23)]
    forward = generator(42)
    backward = generator(42)
    backward.between("GBPUSD", WEDNESDAY, WEDNESDAY + HOUR_MS)  # other work first
    first = {m: columns(forward.minute("EURUSD", m)) for m in minutes}
    second = {m: columns(backward.minute("EURUSD", m)) for m in reversed(minutes)}
    assert first == second
    assert all(len(cols[0]) > 0 for cols in first.values())


def test_a_different_seed_gives_different_ticks() -> None:
    one = generator(42).minute("EURUSD", WEDNESDAY + 14 * HOUR_MS)
    other = generator(43).minute("EURUSD", WEDNESDAY + 14 * HOUR_MS)
    assert len(one) > 0
    assert len(other) > 0
    assert one.ts_ms.tobytes() != other.ts_ms.tobytes()
    assert one.bid.tobytes() != other.bid.tobytes()


def test_symbols_have_their_own_ticks() -> None:
    gen = generator()
    eur = gen.minute("EURUSD", WEDNESDAY + 14 * HOUR_MS)
    gbp = gen.minute("GBPUSD", WEDNESDAY + 14 * HOUR_MS)
    assert eur.ts_ms.tobytes() != gbp.ts_ms.tobytes()


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_between_is_the_concatenation_of_minutes(symbol: str) -> None:
    # Friday evening to past the weekly close (22:00 UTC in winter), with unaligned edges
    start = utc(2024, 3, 8, 20, 0) + 12_345
    end = utc(2024, 3, 8, 23, 30) + 777
    gen = generator()
    batch = gen.between(symbol, start, end)
    first_open = start - start % MINUTE_MS
    minutes = [gen.minute(symbol, m) for m in range(first_open, end, MINUTE_MS)]
    ts = np.concatenate([m.ts_ms for m in minutes])
    keep = (ts >= start) & (ts < end)
    expected = tuple(
        np.concatenate([np.asarray(getattr(m, name)) for m in minutes])[keep].tobytes()
        for name in ("ts_ms", "bid", "ask", "bid_volume", "ask_volume")
    )
    assert columns(batch) == expected
    assert len(batch) > 1000
    assert int(batch.ts_ms[0]) >= start
    assert int(batch.ts_ms[-1]) < end


def test_between_on_a_fresh_generator_matches_minute_by_minute_on_another() -> None:
    start, end = WEDNESDAY + 9 * HOUR_MS, WEDNESDAY + 11 * HOUR_MS
    whole = generator().between("USDJPY", start, end)
    gen = generator()
    pieces = [gen.minute("USDJPY", m) for m in range(start, end, MINUTE_MS)]
    assert columns(whole) == concat(pieces)


def test_closed_minutes_have_no_ticks_under_fx_ny() -> None:
    gen = generator(profile="fx_ny")
    saturday_noon = utc(2024, 3, 9, 12)
    christmas_noon_new_york = utc(2024, 12, 25, 17)  # 12:00 EST
    for symbol in SYMBOLS:
        assert len(gen.minute(symbol, saturday_noon)) == 0
        assert len(gen.minute(symbol, christmas_noon_new_york)) == 0
        assert len(gen.between(symbol, utc(2024, 3, 9), utc(2024, 3, 10))) == 0
        assert len(gen.between(symbol, utc(2024, 12, 24, 22), utc(2024, 12, 25, 22))) == 0
    # the week closes Friday 17:00 New York (22:00 UTC, EST) and reopens Sunday 17:00 (21:00
    # UTC: DST began that day)
    assert len(gen.between("EURUSD", utc(2024, 3, 8, 21), utc(2024, 3, 8, 22))) > 0
    assert len(gen.between("EURUSD", utc(2024, 3, 8, 22), utc(2024, 3, 10, 21))) == 0
    assert len(gen.between("EURUSD", utc(2024, 3, 10, 21), utc(2024, 3, 10, 22))) > 0


def test_the_same_minutes_trade_under_always_open() -> None:
    gen = generator(profile="always_open")
    christmas = utc(2024, 12, 25, 17)
    assert len(gen.between("EURUSD", christmas, christmas + HOUR_MS)) > 1000
    assert len(gen.between("EURUSD", utc(2024, 3, 9, 12), utc(2024, 3, 9, 13))) > 1000


def test_metals_pause_daily_under_fx_ny() -> None:
    gen = generator()
    calendar = calendar_profile("fx_ny").for_symbol("XAUUSD")
    day = gen.between("XAUUSD", WEDNESDAY, WEDNESDAY + 24 * HOUR_MS)
    assert len(day) > 0
    assert calendar.is_open_array(day.ts_ms - day.ts_ms % MINUTE_MS).all()
    closed = [
        m for m in range(WEDNESDAY, WEDNESDAY + 24 * HOUR_MS, MINUTE_MS) if not calendar.is_open(m)
    ]
    assert closed  # the daily break exists
    assert all(len(gen.minute("XAUUSD", m)) == 0 for m in closed)


def test_london_and_new_york_hours_are_busier_than_asia() -> None:
    gen = generator()
    london, asia = [], []
    for day in range(3):  # Wednesday to Friday
        midnight = WEDNESDAY + day * 24 * HOUR_MS
        for symbol in ("EURUSD", "GBPUSD", "USDJPY"):
            london.append(
                len(gen.between(symbol, midnight + 12 * HOUR_MS, midnight + 16 * HOUR_MS))
            )
            asia.append(len(gen.between(symbol, midnight + 1 * HOUR_MS, midnight + 5 * HOUR_MS)))
    per_minute_london = sum(london) / (len(london) * 240)
    per_minute_asia = sum(asia) / (len(asia) * 240)
    assert per_minute_london > 2 * per_minute_asia
    assert per_minute_asia > 10


def test_ticks_per_minute_is_the_daily_average() -> None:
    gen = generator(ticks_per_minute=60)
    total = sum(
        len(gen.between(s, WEDNESDAY, WEDNESDAY + 24 * HOUR_MS)) for s in ("EURUSD", "GBPUSD")
    )
    assert 0.9 * 60 < total / (2 * 1440) < 1.1 * 60
    sparse = generator(ticks_per_minute=5)
    count = len(sparse.between("EURUSD", WEDNESDAY, WEDNESDAY + 24 * HOUR_MS))
    assert 0.85 * 5 < count / 1440 < 1.15 * 5


def test_quiet_minutes_exist_at_a_low_rate() -> None:
    gen = generator(ticks_per_minute=2)
    counts = [
        len(gen.minute("EURUSD", m)) for m in range(WEDNESDAY, WEDNESDAY + 2 * HOUR_MS, MINUTE_MS)
    ]
    assert 0 < counts.count(0) < len(counts)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_ticks_are_inside_their_minute_and_ascending(symbol: str) -> None:
    gen = generator()
    for minute in range(WEDNESDAY + 8 * HOUR_MS, WEDNESDAY + 9 * HOUR_MS, 7 * MINUTE_MS):
        batch = gen.minute(symbol, minute)
        assert len(batch) > 0
        assert (batch.ts_ms >= minute).all()
        assert (batch.ts_ms < minute + MINUTE_MS).all()
        assert (np.diff(batch.ts_ms) >= 0).all()
        assert batch.ts_ms.dtype == np.int64


@pytest.mark.parametrize(
    ("symbol", "level", "point"),
    [
        ("EURUSD", 1.10, 1e-5),
        ("GBPUSD", 1.27, 1e-5),
        ("USDJPY", 150.0, 1e-3),
        ("XAUUSD", 2000.0, 1e-2),
    ],
)
def test_prices_are_plausible_quotes(symbol: str, level: float, point: float) -> None:
    gen = generator()
    batch = gen.between(symbol, WEDNESDAY, WEDNESDAY + 24 * HOUR_MS)
    assert len(batch) > 40_000
    assert (batch.bid < batch.ask).all()
    spread_points = np.rint((batch.ask - batch.bid) / point)
    usual = gen.profile(symbol).spread_points
    assert spread_points.min() == usual  # the narrowest spread occurs...
    assert spread_points.max() <= 4 * usual  # ...and thin hours widen it at most fourfold
    assert np.abs(batch.bid / level - 1).max() < 0.1
    per_unit = round(1 / point)
    for prices in (batch.bid, batch.ask):  # whole points, the nearest double to the decimal
        assert (np.rint(prices * per_unit) / per_unit == prices).all()
    assert batch.bid_volume is not None
    assert batch.ask_volume is not None
    for sizes in (batch.bid_volume, batch.ask_volume):
        assert sizes.min() >= 0.1
        assert sizes.max() <= 5.0


def test_levels_of_unknown_symbols_are_stable_and_scaled() -> None:
    assert symbol_profile("EURUSD").level == 1.10
    other = symbol_profile("ABCDEF")
    assert other == symbol_profile("ABCDEF")
    assert 0.6 <= other.level <= 1.4
    assert other.point == 1e-5
    cross = symbol_profile("CADJPY")
    assert 90 <= cross.level <= 210
    assert cross.digits == 3
    assert symbol_profile("XAUEUR").digits == 2
    assert symbol_profile("ABCDEF").level != symbol_profile("ABCDEG").level


@pytest.mark.parametrize("symbol", ["EURUSD", "USDJPY"])
def test_the_path_is_continuous_across_minutes(symbol: str) -> None:
    gen = generator()
    point = gen.profile(symbol).point
    jumps, moves = [], []
    for minute in range(WEDNESDAY + 10 * HOUR_MS, WEDNESDAY + 13 * HOUR_MS, MINUTE_MS):
        this, following = gen.minute(symbol, minute), gen.minute(symbol, minute + MINUTE_MS)
        later = gen.minute(symbol, minute + 60 * MINUTE_MS)
        jumps.append(abs(following.bid[0] - this.bid[-1]) / point)
        moves.append(abs(later.bid[0] - this.bid[-1]) / point)
    # a fresh random start per minute would jump as far as the price moves in an hour
    assert np.mean(jumps) < 6
    assert np.mean(moves) > 5 * np.mean(jumps)


def test_unknown_symbol_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="NOPE"):
        generator().minute("NOPE", WEDNESDAY)
    with pytest.raises(ConfigError, match="NOPE"):
        generator().between("NOPE", WEDNESDAY, WEDNESDAY + HOUR_MS)


def test_a_minute_must_start_on_a_minute() -> None:
    with pytest.raises(ContractViolation):
        generator().minute("EURUSD", WEDNESDAY + 1)


def test_bad_settings_are_config_errors() -> None:
    calendars = {"EURUSD": calendar_profile("fx_ny").default}
    with pytest.raises(ConfigError, match="seed"):
        TickGenerator(-1, calendars)
    with pytest.raises(ConfigError, match="ticks_per_minute"):
        TickGenerator(1, calendars, ticks_per_minute=0)


def test_ticks_per_minute_max_gives_each_symbol_its_own_stable_rate() -> None:
    calendars = calendar_profile("always_open")
    symbols = [f"S{i:03d}USD" for i in range(40)]
    table = {s: calendars.for_symbol(s) for s in symbols}
    gen = TickGenerator(5, table, 300, ticks_per_minute_max=1200, hourly=False)
    rates = [gen.rate(s) for s in symbols]
    assert all(300 <= rate <= 1200 for rate in rates)
    assert max(rates) - min(rates) > 450  # spread over the range, not one rate
    again = TickGenerator(6, table, 300, ticks_per_minute_max=1200, hourly=False)
    assert [again.rate(s) for s in symbols] == rates  # from the name, not the seed
    for symbol in symbols[:4]:
        count = len(gen.between(symbol, WEDNESDAY, WEDNESDAY + HOUR_MS))
        assert 0.8 * gen.rate(symbol) < count / 60 < 1.2 * gen.rate(symbol)


def test_without_a_max_every_symbol_has_ticks_per_minute_and_the_same_ticks() -> None:
    calendars = calendar_profile("fx_ny")
    table = {s: calendars.for_symbol(s) for s in SYMBOLS}
    plain = TickGenerator(42, table, 60)
    explicit = TickGenerator(42, table, 60, ticks_per_minute_max=60, hourly=True)
    assert {plain.rate(s) for s in SYMBOLS} == {60}
    span = (WEDNESDAY, WEDNESDAY + 2 * HOUR_MS)
    assert columns(plain.between("EURUSD", *span)) == columns(explicit.between("EURUSD", *span))


def test_flat_intensity_keeps_quiet_hours_at_the_average() -> None:
    calendars = calendar_profile("fx_ny")
    table = {s: calendars.for_symbol(s) for s in SYMBOLS}
    flat = TickGenerator(42, table, 120, hourly=False)
    asia = len(flat.between("EURUSD", WEDNESDAY + 1 * HOUR_MS, WEDNESDAY + 4 * HOUR_MS)) / 180
    london = len(flat.between("EURUSD", WEDNESDAY + 13 * HOUR_MS, WEDNESDAY + 16 * HOUR_MS)) / 180
    assert 0.85 * 120 < asia < 1.15 * 120
    assert 0.85 * 120 < london < 1.15 * 120


def test_a_max_below_ticks_per_minute_is_a_config_error() -> None:
    calendars = {"EURUSD": calendar_profile("fx_ny").default}
    with pytest.raises(ConfigError, match="ticks_per_minute_max"):
        TickGenerator(1, calendars, 100, ticks_per_minute_max=50)
