"""Deterministic FX-like ticks for the sim broker: a pure function of (seed, symbol, minute).

Rules:
- Pure: no clock reads, no I/O, and nothing depends on what was generated before. The ticks of a
  minute are a function of the seed, the symbol, the minute and the rate settings only, so any
  minute can be generated alone, in any order, byte for byte the same. The broker cuts both its
  live stream and its history from this one function, which is what makes the history exactly
  the aggregation of the ticks.
- Randomness is counter-based: per minute, a Philox generator keyed by (seed, crc32(symbol)) with
  the minute index as its counter; the price anchors hash (key, scale, knot) with splitmix64.
  Never Python's `hash()`, which is salted per process.
- The price path is continuous across minutes without generating earlier minutes. Every minute
  boundary has an anchor price from multi-scale value noise (knots every 1, 4, 16, ... 4^8 minutes,
  amplitudes growing like sqrt(scale), so the variance grows about linearly with the lag, as in a
  random walk); inside a minute the mid follows a Brownian bridge between its two anchors. Anchors
  use only exact IEEE arithmetic (no transcendental functions), so computing them one minute at a
  time or for a whole range at once gives identical bits.
- Calendar-aware: a minute that the symbol's calendar calls closed at its open has no ticks
  (calendar boundaries are whole minutes). An open minute may have no ticks (a quiet minute).
- Tick intensity follows the UTC hour (London and New York busy, Asia and the rollover quiet);
  a symbol's rate is the average over a whole 24h day. `hourly=False` keeps every hour at that
  average (a load that does not depend on the time of day, for benchmarks). The rate is
  `ticks_per_minute` for every symbol, or with `ticks_per_minute_max` above it, each symbol's own
  in `[ticks_per_minute, ticks_per_minute_max]`, stable and derived from its name (crc32), as
  real instruments differ. Arrival times are random milliseconds
  inside the minute, ascending (equal milliseconds may repeat, as in real feeds).
- Prices are whole multiples of the symbol's point; bid < ask always (a spread of a few points).

It knows nothing of bars, brokers, clocks or asyncio.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.errors import ConfigError, ContractViolation
from fxconnector.core.model.tick import TickBatch
from fxconnector.core.time_geom import DAY_MS, HOUR_MS, MINUTE_MS, I64Array

F64Array = npt.NDArray[np.float64]
U64Array = npt.NDArray[np.uint64]

_U64_MAX: Final = 2**64 - 1


@dataclass(frozen=True, slots=True)
class SymbolProfile:
    """How one symbol looks: price level, point, typical spread and per-minute volatility."""

    level: float
    digits: int  # the point is 10**-digits
    spread_points: int  # the narrowest usual spread; busy minutes stay near it
    volatility: float  # relative standard deviation of the mid over one minute

    @property
    def point(self) -> float:
        return 10.0**-self.digits


_KNOWN: Final[Mapping[str, SymbolProfile]] = {
    "EURUSD": SymbolProfile(1.10, 5, 6, 1.0e-4),
    "GBPUSD": SymbolProfile(1.27, 5, 9, 1.2e-4),
    "USDJPY": SymbolProfile(150.0, 3, 8, 1.1e-4),
    "XAUUSD": SymbolProfile(2000.0, 2, 25, 1.8e-4),
    "XAGUSD": SymbolProfile(24.0, 3, 25, 3.0e-4),
    "USDCHF": SymbolProfile(0.88, 5, 10, 1.0e-4),
    "AUDUSD": SymbolProfile(0.66, 5, 7, 1.2e-4),
    "USDCAD": SymbolProfile(1.36, 5, 10, 0.9e-4),
    "NZDUSD": SymbolProfile(0.60, 5, 10, 1.3e-4),
    "EURJPY": SymbolProfile(162.0, 3, 12, 1.2e-4),
    "GBPJPY": SymbolProfile(190.0, 3, 18, 1.4e-4),
}


def symbol_profile(symbol: str) -> SymbolProfile:
    """The profile of a known symbol, or a stable one derived from the symbol's name."""
    known = _KNOWN.get(symbol)
    if known is not None:
        return known
    # crc32, not hash(): the level must be the same in every process and on every machine.
    scale = 0.6 + 0.8 * (zlib.crc32(symbol.encode()) % 10_007) / 10_007
    if symbol.startswith("XAU"):
        return SymbolProfile(round(2000.0 * scale, 2), 2, 25, 1.8e-4)
    if symbol.endswith("JPY"):
        return SymbolProfile(round(150.0 * scale, 3), 3, 12, 1.2e-4)
    return SymbolProfile(round(scale, 5), 5, 10, 1.2e-4)


# Relative tick intensity by UTC hour: Tokyo quiet, London from 07:00, the London/New York overlap
# busiest, New York afternoon fading, the 21:00-22:00 rollover quietest. Normalised to mean 1 so
# `ticks_per_minute` is the day's average.
_HOURLY_RAW: Final = np.array(
    [
        [0.45, 0.50, 0.50, 0.45, 0.40, 0.40, 0.50, 0.90, 1.40, 1.50, 1.40, 1.30],  # 00-11
        [1.60, 1.90, 2.00, 1.80, 1.50, 1.10, 0.80, 0.70, 0.60, 0.25, 0.35, 0.45],  # 12-23
    ]
).ravel()
_HOURLY: Final[tuple[float, ...]] = tuple((_HOURLY_RAW / _HOURLY_RAW.mean()).tolist())
#: Gamma shape of the per-minute rate (a negative binomial count): real tick counts are
#: over-dispersed, and quiet minutes happen.
_DISPERSION: Final = 3.0
#: Below this intensity the market is thin and spreads double.
_THIN: Final = 0.5

# Value-noise scales in minutes. With linear interpolation a one-minute step gets variance
# 2*c*(1 + 1/4 + 1/16 + ...) = 8c/3 from all scales together, so amplitude**2 = c*scale with
# c = 3/8 makes one minute's anchor step about one `volatility`.
_SCALES: Final[I64Array] = 4 ** np.arange(9, dtype=np.int64)
_AMPLITUDES: Final[tuple[float, ...]] = tuple(np.sqrt(0.375 * _SCALES).tolist())
_SQRT3: Final = 3.0**0.5  # uniform knots on [-sqrt3, sqrt3] have unit variance
#: The bridge's walk is summed in integers of 2**-32 of a unit step (see `_generate`).
_WALK_UNITS: Final = 2.0**32


class TickGenerator:
    """Seeded ticks for any symbol the calendars know, one minute at a time."""

    __slots__ = (
        "_anchor_keys",
        "_bitgen",
        "_calendars",
        "_hourly",
        "_philox_keys",
        "_profiles",
        "_random",
        "_rates",
        "_seed",
        "ticks_per_minute",
    )

    def __init__(
        self,
        seed: int,
        calendars: Mapping[str, TradingCalendar],
        ticks_per_minute: int = 60,
        *,
        ticks_per_minute_max: int = 0,
        hourly: bool = True,
    ) -> None:
        if not 0 <= seed <= _U64_MAX:
            raise ConfigError(f"sim seed must be an integer in [0, 2**64), not {seed}")
        if ticks_per_minute < 1:
            raise ConfigError(f"sim ticks_per_minute must be at least 1, not {ticks_per_minute}")
        if ticks_per_minute_max and ticks_per_minute_max < ticks_per_minute:
            raise ConfigError(
                f"sim ticks_per_minute_max ({ticks_per_minute_max}) must be 0 or at least "
                f"ticks_per_minute ({ticks_per_minute})"
            )
        self._seed = seed
        self._calendars = dict(calendars)
        self.ticks_per_minute = ticks_per_minute
        self._hourly = hourly
        self._profiles = {symbol: symbol_profile(symbol) for symbol in self._calendars}
        # crc32 of the name, not hash(): the same keys in every process and on every machine
        names = {symbol: zlib.crc32(symbol.encode()) for symbol in self._calendars}
        spread = max(ticks_per_minute_max - ticks_per_minute, 0)
        self._rates = {
            symbol: ticks_per_minute + (name % (spread + 1)) for symbol, name in names.items()
        }
        self._philox_keys = {
            symbol: np.array([seed, name], dtype=np.uint64) for symbol, name in names.items()
        }
        self._anchor_keys = {
            symbol: np.uint64(_splitmix(seed ^ (name << 32))) for symbol, name in names.items()
        }
        # One Philox reused for speed: every minute resets its whole state (key, counter,
        # buffers), so no draw depends on an earlier one. Not for use from several threads.
        self._bitgen = np.random.Philox(key=np.array([seed, 0], dtype=np.uint64))
        self._random = np.random.Generator(self._bitgen)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._calendars)

    def calendar(self, symbol: str) -> TradingCalendar:
        """The calendar the generator follows for `symbol`."""
        try:
            return self._calendars[symbol]
        except KeyError:
            known = ", ".join(sorted(self._calendars)) or "none"
            raise ConfigError(f"sim: unknown symbol {symbol!r} (known: {known})") from None

    def profile(self, symbol: str) -> SymbolProfile:
        """Price level, point, spread and volatility used for `symbol`."""
        self.calendar(symbol)
        return self._profiles[symbol]

    def rate(self, symbol: str) -> int:
        """The symbol's average ticks per minute (over a whole day when `hourly`)."""
        self.calendar(symbol)
        return self._rates[symbol]

    def minute(self, symbol: str, minute_open_ms: int) -> TickBatch:
        """The ticks of the minute opening at `minute_open_ms`, ascending, all inside it."""
        if minute_open_ms % MINUTE_MS:
            raise ContractViolation(f"sim: {minute_open_ms} is not a minute open")
        return self.between(symbol, minute_open_ms, minute_open_ms + MINUTE_MS)

    def between(self, symbol: str, from_ms: int, to_ms: int) -> TickBatch:
        """The ticks with `from_ms <= ts_ms < to_ms`: the `minute` batches concatenated."""
        calendar = self.calendar(symbol)
        if to_ms <= from_ms:
            return _empty(symbol)
        # open_intervals has whole-minute edges, so these are exactly the minutes open at their open
        ranges = [
            np.arange(start // MINUTE_MS, -(-end // MINUTE_MS), dtype=np.int64)
            for start, end in calendar.open_intervals(from_ms, to_ms)
        ]
        if not ranges:
            return _empty(symbol)
        joined = self._generate(symbol, np.concatenate(ranges))
        lo = int(np.searchsorted(joined.ts_ms, from_ms, side="left"))
        hi = int(np.searchsorted(joined.ts_ms, to_ms, side="left"))
        return joined if lo == 0 and hi == len(joined) else joined.slice(lo, hi)

    def _generate(self, symbol: str, indices: I64Array) -> TickBatch:
        """Ticks of the open minutes `indices` (ascending minute indices since the epoch).

        The random draws are made minute by minute (each minute's own Philox counter); the
        arithmetic is vectorised over all minutes and uses only exact IEEE operations
        element by element, so a minute's ticks are the same bits alone or in any range.
        """
        profile = self._profiles[symbol]
        opens = indices * MINUTE_MS
        if self._hourly:
            intensity = np.array(_HOURLY, dtype=np.float64)[(opens % DAY_MS) // HOUR_MS]
        else:
            intensity = np.ones(opens.size, dtype=np.float64)
        draws = self._draws(symbol, indices.tolist(), intensity.tolist())
        if draws is None:
            return _empty(symbol)
        counts, uniforms, normals = draws
        full = counts > 0
        counts = counts[full]
        starts, ends = np.split(self._anchors(symbol, np.concatenate((indices, indices + 1))), 2)
        starts, ends = starts[full], ends[full]
        minute = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
        first = np.cumsum(counts) - counts  # each minute's first tick
        last = first + counts - 1

        # Arrival times: sorting minute*T + offset sorts inside each minute and keeps minutes apart.
        offsets = np.minimum((uniforms[0] * MINUTE_MS).astype(np.int64), MINUTE_MS - 1)
        offsets = np.sort(minute * MINUTE_MS + offsets) - minute * MINUTE_MS
        before = np.empty_like(offsets)
        before[1:] = offsets[:-1]
        before[first] = 0
        end_steps = MINUTE_MS - offsets[last]

        # Brownian bridge. The walk is summed in integer units of 2**-32 so that one cumsum over
        # all minutes, minus each minute's base, is exact (a float cumsum would depend on where
        # the range starts); 2**-32 of a unit step is far below a point.
        tick_normals = np.delete(normals, np.cumsum(counts + 1) - 1)
        end_normals = normals[np.cumsum(counts + 1) - 1]
        steps = np.rint(tick_normals * np.sqrt((offsets - before) / MINUTE_MS) * _WALK_UNITS)
        end_step = np.rint(end_normals * np.sqrt(end_steps / MINUTE_MS) * _WALK_UNITS)
        running = np.cumsum(steps.astype(np.int64))
        walk_units = running - np.repeat(running[first] - steps[first].astype(np.int64), counts)
        end_units = walk_units[last] + end_step.astype(np.int64)
        fraction = offsets / MINUTE_MS
        bridge = (walk_units - fraction * np.repeat(end_units, counts)) / _WALK_UNITS

        # Busy hours move more: the bridge's volatility follows the tick intensity.
        swing = starts * profile.volatility * np.sqrt(intensity[full])
        start = np.repeat(starts, counts)
        mid = (
            start + (np.repeat(ends, counts) - start) * fraction + np.repeat(swing, counts) * bridge
        )

        base = profile.spread_points
        spread = base + np.minimum((uniforms[1] * (base + 1)).astype(np.int64), base)
        spread = spread * np.repeat(np.where(intensity[full] < _THIN, 2, 1), counts)
        per_unit = 10.0**profile.digits
        bid_points = np.rint(mid * per_unit - spread / 2)
        cubes = uniforms[2:] * uniforms[2:] * uniforms[2:]  # sizes skewed towards small ones
        sizes = np.rint((0.1 + 4.9 * cubes) * 100.0) / 100.0  # millions, 0.1 to 5.0
        # Whole point counts divided by an exact power of ten give the double nearest to the
        # decimal price (multiplying by 1e-5 would not).
        return TickBatch(
            symbol=symbol,
            ts_ms=np.repeat(opens[full], counts) + offsets,
            bid=bid_points / per_unit,
            ask=(bid_points + spread) / per_unit,
            bid_volume=sizes[0],
            ask_volume=sizes[1],
        )

    def _draws(
        self, symbol: str, indices: list[int], intensities: list[float]
    ) -> tuple[I64Array, F64Array, F64Array] | None:
        """Per minute: its tick count, 4 uniforms per tick and count + 1 normals.

        None when no minute has a tick.
        """
        key = self._philox_keys[symbol]
        average = self._rates[symbol]
        rng = self._random
        counts: list[int] = []
        uniforms: list[F64Array] = []
        normals: list[F64Array] = []
        for index, intensity in zip(indices, intensities, strict=True):
            self._bitgen.state = {
                "bit_generator": "Philox",
                "state": {"counter": np.array([0, index, 0, 0], dtype=np.uint64), "key": key},
                "buffer": np.zeros(4, dtype=np.uint64),
                "buffer_pos": 4,
                "has_uint32": 0,
                "uinteger": 0,
            }
            rate = average * intensity
            count = int(rng.negative_binomial(_DISPERSION, _DISPERSION / (_DISPERSION + rate)))
            counts.append(count)
            if count:
                uniforms.append(rng.random((4, count)))
                normals.append(rng.standard_normal(count + 1))
        if not uniforms:
            return None
        return (
            np.array(counts, dtype=np.int64),
            np.concatenate(uniforms, axis=1),
            np.concatenate(normals),
        )

    def _anchors(self, symbol: str, indices: I64Array) -> F64Array:
        """Anchor prices at the opens of minutes `indices` (exact arithmetic, see module doc)."""
        profile = self._profiles[symbol]
        key = self._anchor_keys[symbol]
        scales = _SCALES[:, None]
        knots = indices[None, :] // scales
        fraction = (indices[None, :] - knots * scales) / scales  # exact: scales are powers of 2
        # (knot, scale) -> a unique counter; the hash of counter ^ key is the knot's value
        rows = np.arange(_SCALES.size, dtype=np.int64)[:, None]
        both = np.stack((knots, knots + 1)) * _SCALES.size + rows
        left, right = _uniform_knots(key, both)
        noise = left + fraction * (right - left)
        total = _AMPLITUDES[0] * noise[0]
        for row in range(1, _SCALES.size):  # a fixed order of additions, element by element
            total = total + _AMPLITUDES[row] * noise[row]
        result: F64Array = profile.level * (1.0 + profile.volatility * total)
        return result


def _splitmix(value: int) -> int:
    """splitmix64's finaliser on a Python int (for one key)."""
    z = (value + 0x9E3779B97F4A7C15) & _U64_MAX
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _U64_MAX
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _U64_MAX
    return z ^ (z >> 31)


def _uniform_knots(key: np.uint64, counters: I64Array) -> F64Array:
    """Values uniform on [-sqrt3, sqrt3] hashed from (key, counter); uint64 wraps by design."""
    z = (counters.astype(np.uint64) ^ key) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    unit = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
    values: F64Array = (2.0 * unit - 1.0) * _SQRT3
    return values


def _empty(symbol: str) -> TickBatch:
    floats = np.zeros(0, dtype=np.float64)
    return TickBatch(symbol, np.zeros(0, dtype=np.int64), floats, floats, floats, floats)
