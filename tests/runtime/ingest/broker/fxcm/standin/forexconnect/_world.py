"""The stand-in's world: who may log in, where prices come from, which faults are switched on.

Not part of the real SDK. One World per process (`world()`), configured by the environment of
the process that imports the stand-in (the bridge, in the tests):

  FXCM_STANDIN_USER, FXCM_STANDIN_PASSWORD  the credentials accepted (default standin/standin)
  FXCM_STANDIN_INSTRUMENTS  the offers rows, default "EUR/USD,GBP/USD,USD/JPY,AUD/USD"
  FXCM_STANDIN_FEED         "generator": fxconnector's sim TickGenerator on wall-clock time with
                            an always-open calendar (needs src on PYTHONPATH, Python 3.11);
                            "recorded:<path>": JSON lines {"instrument", "bid", "ask", "ts_ms"}
                            played from the first line at wall-clock pace (standard library only,
                            so it runs under a real Python 3.7)
  FXCM_STANDIN_SEED, FXCM_STANDIN_TICKS_PER_MINUTE  the generator's seed (7) and rate (600)
  FXCM_STANDIN_FAULTS       a JSON object of faults at start
  FXCM_STANDIN_CONTROL      a JSON file of faults, re-read whenever it changes (overrides)

Faults:
  history_errors            int: the next N get_history calls raise FXCM's errorCode=28 text
  history_empty             get_history returns no rows
  history_partial           get_history returns the first half of its rows
  history_bad_rows          list of minute opens (epoch ms): those rows come with NaN prices
                            (as a broken price-history cache entry reads back)
  history_bad_dates         list of minute opens (epoch ms): those rows come with a NaT Date
  history_fail_from_ms      int: a get_history whose date_from is at or after this epoch ms
                            raises FXCM's errorCode=28 text (a chunk of a range fails)
  history_hang              `is_ready` never comes: get_history busy-waits for ever
  history_near_now_fails_s  a get_history whose date_to is within this many seconds of now fails
  silent                    the offers stop updating; the session stays CONNECTED
  lose_session              int: every increase fires SESSION_LOST once (the next login works)
  login_failures            int: the next N logins fail as on a network error (errorCode=28)
  password_expired          logins end in CONNECTED_WITH_NEED_TO_CHANGE_PASSWORD
  print_noise               the SDK writes junk to stdout (Python and file-descriptor level)
A change of `history_errors` or `login_failures` in the control file restarts its count.

Candles are FXCM-like: stamped at the minute's open, Volume is the tick count, and in
PREVIOUS_CLOSE mode the open is the previous candle's close while high/low come from the
minute's own ticks only (so the open may lie outside them).
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import os
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    Ticks = tuple[list[int], list[float], list[float]]
    Candle = tuple[int, float, float, float, float, float, float, float, float, int]

MINUTE_MS = 60000
#: The most rows one get_history call returns (the most recent ones); the bridge must chunk.
MAX_QUOTES = 300
ERROR_28 = (
    "QuotesManager error: HTTP request failed object='/pricearchive/catalog.xml' "
    "errorCode=28 code: QuotesServerConnectionError subcode: 28"
)
LOGIN_ERROR_28 = "HTTP request failed object='/pdas/servlet?rnd=1709726400000' errorCode=28"
#: The stand-in's wording for refused credentials.
BAD_LOGIN = "Incorrect user name or password"
UTC = dt.timezone.utc  # noqa: UP017 (datetime.UTC is new in 3.11; the stand-in runs on 3.7 too)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def wall_ms() -> int:
    return int(time.time() * 1000)


def naive_utc(ms: int) -> dt.datetime:
    """As the SDK hands out times: naive datetimes in UTC."""
    return (EPOCH + dt.timedelta(milliseconds=ms)).replace(tzinfo=None)


def from_naive_utc(moment: dt.datetime) -> int:
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return (aware - EPOCH) // dt.timedelta(milliseconds=1)


class GeneratorFeed:
    """fxconnector's seeded sim ticks, on wall-clock time, every minute open."""

    def __init__(self, instruments: Sequence[str], seed: int, ticks_per_minute: int) -> None:
        from fxconnector.config.calendars import load_calendar
        from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator

        profile = load_calendar("always_open", now_ms=wall_ms(), check_years=1)
        symbols = {instrument: instrument.replace("/", "") for instrument in instruments}
        calendars = {symbol: profile.for_symbol(symbol) for symbol in symbols.values()}
        self._generator = TickGenerator(seed, calendars, ticks_per_minute=ticks_per_minute)
        self._symbols = symbols
        self._instruments = list(instruments)
        self._lock = threading.Lock()  # the generator is not for several threads
        self._minutes: dict[tuple[str, int], Ticks] = {}

    def ticks(self, instrument: str, from_ms: int, to_ms: int) -> Ticks:
        """`instrument`'s ticks with from_ms <= ts < to_ms."""
        with self._lock:
            batch = self._generator.between(self._symbols[instrument], from_ms, to_ms)
        return batch.ts_ms.tolist(), batch.bid.tolist(), batch.ask.tolist()

    def stream(self, after_ms: int, upto_ms: int) -> list[tuple[int, str, float, float]]:
        """Every instrument's ticks with after_ms < ts <= upto_ms, in time order."""
        rows: list[tuple[int, str, float, float]] = []
        first = after_ms - after_ms % MINUTE_MS
        for instrument in self._instruments:
            for minute in range(first, upto_ms + 1, MINUTE_MS):
                ts, bid, ask = self._minute(instrument, minute)
                lo = bisect.bisect_right(ts, after_ms)
                hi = bisect.bisect_right(ts, upto_ms)
                rows.extend((ts[i], instrument, bid[i], ask[i]) for i in range(lo, hi))
        for key in [key for key in self._minutes if key[1] < first - MINUTE_MS]:
            del self._minutes[key]
        rows.sort(key=lambda row: row[0])  # stable: equal times keep the instruments' order
        return rows

    def _minute(self, instrument: str, minute_ms: int) -> Ticks:
        key = (instrument, minute_ms)
        if key not in self._minutes:
            self._minutes[key] = self.ticks(instrument, minute_ms, minute_ms + MINUTE_MS)
        return self._minutes[key]


class RecordedFeed:
    """Recorded ticks, played once from the first line at wall-clock pace, stamped as recorded."""

    def __init__(self, path: str) -> None:
        with open(path, encoding="utf-8") as handle:
            raw = [json.loads(line) for line in handle if line.strip()]
        self._rows = sorted(
            (int(r["ts_ms"]), str(r["instrument"]), float(r["bid"]), float(r["ask"])) for r in raw
        )
        self._times = [row[0] for row in self._rows]
        self._offset_ms: int | None = None

    def ticks(self, instrument: str, from_ms: int, to_ms: int) -> Ticks:
        lo = bisect.bisect_left(self._times, from_ms)
        hi = bisect.bisect_left(self._times, to_ms)
        rows = [row for row in self._rows[lo:hi] if row[1] == instrument]
        return [r[0] for r in rows], [r[2] for r in rows], [r[3] for r in rows]

    def stream(self, after_ms: int, upto_ms: int) -> list[tuple[int, str, float, float]]:
        if not self._rows:
            return []
        if self._offset_ms is None:  # the first line plays right away
            self._offset_ms = after_ms - self._times[0] + 1
        lo = bisect.bisect_right(self._times, after_ms - self._offset_ms)
        hi = bisect.bisect_right(self._times, upto_ms - self._offset_ms)
        return self._rows[lo:hi]


class World:
    """Credentials, instruments, the price feed and the faults of this process."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.user = environ.get("FXCM_STANDIN_USER", "standin")
        self.password = environ.get("FXCM_STANDIN_PASSWORD", "standin")
        names = environ.get("FXCM_STANDIN_INSTRUMENTS", "EUR/USD,GBP/USD,USD/JPY,AUD/USD")
        self.instruments = [name.strip() for name in names.split(",") if name.strip()]
        feed = environ.get("FXCM_STANDIN_FEED", "generator")
        self.feed: GeneratorFeed | RecordedFeed
        if feed.startswith("recorded:"):
            self.feed = RecordedFeed(feed[len("recorded:") :])
        else:
            seed = int(environ.get("FXCM_STANDIN_SEED", "7"))
            rate = int(environ.get("FXCM_STANDIN_TICKS_PER_MINUTE", "600"))
            self.feed = GeneratorFeed(self.instruments, seed, rate)
        self._static: dict[str, Any] = json.loads(environ.get("FXCM_STANDIN_FAULTS") or "{}")
        self._control_path = environ.get("FXCM_STANDIN_CONTROL", "")
        self._control: dict[str, Any] = {}
        self._control_stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._left = {
            "history_errors": int(self._static.get("history_errors", 0)),
            "login_failures": int(self._static.get("login_failures", 0)),
        }
        self._refresh()
        self._lost_seen = int(self.fault("lose_session", 0))

    def fault(self, name: str, default: Any) -> Any:
        with self._lock:
            self._refresh()
            return self._control.get(name, self._static.get(name, default))

    def take(self, counter: str) -> bool:
        """Use one of the `history_errors` / `login_failures` still due; False when none is."""
        with self._lock:
            self._refresh()
            if self._left[counter] <= 0:
                return False
            self._left[counter] -= 1
            return True

    def session_lost_due(self) -> bool:
        value = int(self.fault("lose_session", 0))
        with self._lock:
            if value <= self._lost_seen:
                return False
            self._lost_seen = value
            return True

    def login_failure(self, user: str, password: str, connection: str) -> str | None:
        if user != self.user or password != self.password:
            return f"{BAD_LOGIN} (user {user})"  # echoes the user id: redaction is tested
        if connection not in ("Demo", "Real"):
            return f"Connection name {connection!r} is not known"
        if self.take("login_failures"):
            return LOGIN_ERROR_28
        return None

    def _refresh(self) -> None:
        if not self._control_path:
            return
        try:
            status = os.stat(self._control_path)
        except OSError:
            return
        stamp = (status.st_mtime_ns, status.st_size)
        if stamp == self._control_stamp:
            return
        try:
            with open(self._control_path, encoding="utf-8") as handle:
                control = json.load(handle)
        except ValueError:
            return  # caught mid-write: read it again next time
        self._control_stamp = stamp
        for counter in self._left:
            if counter in control and control[counter] != self._control.get(counter):
                self._left[counter] = int(control[counter])
        self._control = control

    def candles(
        self,
        instrument: str,
        first_ms: int,
        last_ms: int,
        now_ms: int,
        previous_close: bool,
    ) -> list[Candle]:
        """FXCM-like m1 candles of the minutes first_ms..last_ms (opens) begun by now_ms."""
        ts, bid, ask = self.feed.ticks(instrument, first_ms, min(last_ms + MINUTE_MS, now_ms + 1))
        previous = self._previous_close(instrument, first_ms) if previous_close else None
        candles = []
        start = 0
        while start < len(ts):
            minute = ts[start] - ts[start] % MINUTE_MS
            stop = start
            while stop < len(ts) and ts[stop] < minute + MINUTE_MS:
                stop += 1
            bids, asks = bid[start:stop], ask[start:stop]
            use_previous = previous_close and previous is not None
            bid_open, ask_open = previous if use_previous and previous else (bids[0], asks[0])
            high_low = (max(bids), min(bids), bids[-1], ask_open, max(asks), min(asks), asks[-1])
            candles.append((minute, bid_open, *high_low, stop - start))
            previous = (bids[-1], asks[-1])
            start = stop
        return candles

    def _previous_close(self, instrument: str, before_ms: int) -> tuple[float, float] | None:
        for hours in range(1, 25):
            ts, bid, ask = self.feed.ticks(instrument, before_ms - hours * 3600000, before_ms)
            if ts:
                return bid[-1], ask[-1]
        return None


_WORLD: World | None = None
_WORLD_LOCK = threading.Lock()


def world() -> World:
    """The process's World, made on first use."""
    global _WORLD  # one world per process is the point
    with _WORLD_LOCK:
        if _WORLD is None:
            _WORLD = World(dict(os.environ))
        return _WORLD
