"""Event-loop stalls during heavy work (issue 11 point 4), on the real FXCM GBPUSD 2012 year.

A probe task sleeps 5 ms in a loop and records how late it wakes; its p99 and max are the stall
figures. Three scenarios, each with previews pumped as the live connector does (a preview loop
every 50 ms over three symbols fed ticks), counting preview publishes during the run:

- rebuild_derived over the whole year (368k 1m finals -> every higher timeframe);
- tail_guard --repair over 744 h (to 28 Dec 2012) with holes in the store (the first 10 minutes
  of every 12th hour, and the days before December), the broker answering each call after
  0.5 s (the ~60 gap fetches at 6 s each would take six minutes);
- the live fast path over three symbols whose history calls take 6 s each.

Targets: p99 <= 20 ms, max <= 100 ms, previews flowing throughout. The baseline column is the
probe with nothing else running.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from bench.data import fxcm_year, shared_data
from bench.runner import Row
from fxconnector.config.calendars import load_calendar
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.command import Command
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import DAY_MS, HOUR_MS, MINUTE_MS, TIMEFRAMES, to_ms
from fxconnector.core.validation.ticks import TickRails
from fxconnector.core.validation.validator import validate_command
from fxconnector.runtime.ingest.commands.handlers import CommandContext, RepairCaps, execute
from fxconnector.runtime.ingest.polling.live import advance_loop, preview_loop
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.store.ssot_jsonl import JsonlStore

PROBE_S = 0.005
HISTORY_S = 6.0
SYMBOLS = ("GBPUSD", "EURUSD", "USDJPY")
DEC_2012_MS = to_ms(dt.datetime(2012, 12, 1, tzinfo=dt.UTC))
LIVE_NOW_MS = to_ms(dt.datetime(2012, 12, 31, 10, tzinfo=dt.UTC))
#: Friday 28 Dec 2012 20:00, two hours before the year's data ends: 744 h back is 27 Nov.
REPAIR_NOW_MS = to_ms(dt.datetime(2012, 12, 28, 20, tzinfo=dt.UTC))


@dataclass(slots=True)
class Probe:
    """Sleeps PROBE_S in a loop; `late` holds how late each wake-up was (seconds)."""

    late: list[float] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            due = time.perf_counter() + PROBE_S
            await asyncio.sleep(PROBE_S)
            self.late.append(max(0.0, time.perf_counter() - due))

    def figures(self) -> str:
        ordered = sorted(self.late) or [0.0]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return f"stall p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"


@dataclass(slots=True)
class Sink:
    """Counts what the pipeline publishes."""

    previews_seen: int = 0
    finals_seen: int = 0

    def finals(self, events: Sequence[OhlcvEvent]) -> None:
        self.finals_seen += len(events)

    def previews(self, events: Sequence[OhlcvEvent]) -> None:
        self.previews_seen += len(events)


class YearHistory:
    """The broker's 1m history: the FXCM year, each call answered after `delay_s`."""

    def __init__(self, bars: list[OhlcvEvent], delay_s: float) -> None:
        self.bars = bars
        self.opens = np.array([b.open_ms for b in bars], dtype=np.int64)
        self.delay_s = delay_s
        self.calls = 0

    async def __call__(self, symbol: str, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        lo, hi = np.searchsorted(self.opens, [from_ms, to_ms])
        return [msgspec.structs.replace(b, symbol=symbol) for b in self.bars[int(lo) : int(hi)]]


def run() -> list[Row]:
    data = shared_data()
    if data is None:
        print("bench_stall: ../shared/data not found; set FXCONNECTOR_SHARED_DATA")
        return []
    profile = load_calendar("fx_ny", now_ms=to_ms(dt.datetime(2012, 1, 1, tzinfo=dt.UTC)))
    calendar = profile.default
    opens, ohlc = fxcm_year(data / "fxcm" / "fxcm-gbpusd-m1-bid-2012.csv.zip")
    year = [
        bar
        for bar in (_bar("GBPUSD", int(o), row) for o, row in zip(opens, ohlc, strict=True))
        if calendar.is_open(bar.open_ms)
    ]
    # The year and the fake broker's copies are the bench's, not the connector's: frozen out
    # of the cyclic GC, whose full passes over them would otherwise show up as stalls.
    gc.collect()
    gc.freeze()
    rows = []
    idle = Probe()
    asyncio.run(_idle(idle))
    for name, scenario in (
        ("rebuild_derived, 1 year", _rebuild_year),
        ("tail_guard --repair 744 h, 0.5 s calls", _repair_744h),
        ("live fast path, 3 symbols, 6 s calls", _slow_fast_path),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            probe, sink, took, what = asyncio.run(scenario(Path(tmp), year, calendar))
        print(
            f"bench_stall: {name}: {what} in {took:.0f} s; {probe.figures()}; "
            f"{sink.previews_seen} previews"
        )
        rows.append(
            Row(
                f"{name}: {probe.figures()}, {sink.previews_seen} previews",
                len(probe.late),
                "wakes",
                took,
                f"idle probe ({idle.figures()})",
                took,
            )
        )
    return rows


def _bar(symbol: str, open_ms: int, row: np.ndarray) -> OhlcvEvent:
    o, h, low, c = (float(v) for v in row)
    return OhlcvEvent(
        symbol=symbol,
        tf=TIMEFRAMES[0],
        open_ms=open_ms,
        close_ms=open_ms + MINUTE_MS - 1,
        open=o,
        high=max(h, o, c),
        low=min(low, o, c),
        close=c,
        volume=0,
        tick_count=0,
        complete=True,
        source=Source.HISTORY,
        event_ts=open_ms + MINUTE_MS - 1,
        rev=0,
    )


async def _idle(probe: Probe) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(probe.run(stop))
    await asyncio.sleep(1.0)
    stop.set()
    await task


def _store(root: Path, bars: list[OhlcvEvent]) -> JsonlStore:
    store = JsonlStore(root)
    store.open()
    for start in range(0, len(bars), 20_000):
        store.append(bars[start : start + 20_000])
    store.flush()
    return store


def _pipeline(
    store: JsonlStore,
    history: YearHistory,
    calendar: TradingCalendar,
    sink: Sink,
    start_ms: int,
) -> Pipeline:
    calendars = dict.fromkeys(SYMBOLS, calendar)
    return Pipeline(
        history=history,
        store=store,
        calendars=calendars,
        timeframes=TIMEFRAMES,
        spec=BarSpec(),
        rails=TickRails(frozenset(SYMBOLS)),
        sink=sink,
        start_ms=dict.fromkeys(SYMBOLS, start_ms),
        max_chunk_minutes=240,
    )


def _command(text: str) -> Command:
    checked = validate_command(text)
    assert checked.value is not None, checked.problems
    return checked.value


async def _with_live(
    pipeline: Pipeline,
    sink: Sink,
    now_ms: Callable[[], int],
    work: Callable[[], Awaitable[str]],
) -> tuple[Probe, Sink, float, str]:
    """Run `work` with the probe, the live advance and preview loops and a tick feeder."""
    probe = Probe()
    stop = asyncio.Event()
    base = pipeline.builder.previews  # previews of every symbol are pumped each period

    def pump() -> None:
        for symbol in SYMBOLS:
            sink.previews(base(symbol))

    tasks = [
        asyncio.create_task(probe.run(stop)),
        asyncio.create_task(advance_loop(pipeline, _FnClock(now_ms), stop)),
        asyncio.create_task(preview_loop(pipeline, now_ms, 0.05, stop, pump)),
        asyncio.create_task(_ticks(pipeline, now_ms, stop)),
    ]
    await asyncio.sleep(0.2)  # the probe and the loops are running before the work starts
    started = time.perf_counter()
    what = await work()
    took = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*tasks)
    return probe, sink, took, what


class _FnClock:
    """A clock reading `now_ms` (the bench's shifted wall time), sleeping in wall time."""

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self.now_ms = now_ms

    async def sleep_until(self, ts_ms: int) -> None:
        delay_ms = ts_ms - self.now_ms()
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)


async def _ticks(pipeline: Pipeline, now_ms: Callable[[], int], stop: asyncio.Event) -> None:
    price = 1.3
    while not stop.is_set():
        now = now_ms()
        for symbol in SYMBOLS:
            pipeline.on_tick(Tick(symbol=symbol, ts_ms=now, bid=price, ask=price + 0.0002), now)
        await asyncio.sleep(0.01)


async def _rebuild_year(
    root: Path, year: list[OhlcvEvent], calendar: TradingCalendar
) -> tuple[Probe, Sink, float, str]:
    store = _store(root, year)
    first, last = year[0].open_ms, year[-1].open_ms + MINUTE_MS
    store.mark_fetched("GBPUSD", first - first % DAY_MS, last - last % DAY_MS + DAY_MS)
    sink = Sink()
    offset = time.time() * 1000 - LIVE_NOW_MS  # live time: the Monday after the year's data

    def now_ms() -> int:
        return int(time.time() * 1000 - offset)

    pipeline = _pipeline(store, YearHistory(year, HISTORY_S), calendar, sink, now_ms())
    ctx = CommandContext(
        pipeline, store, sink, dict.fromkeys(SYMBOLS, calendar), TIMEFRAMES, RepairCaps()
    )

    async def work() -> str:
        command = _command(
            f'{{"cmd":"rebuild_derived","req_id":"b1","ts":{now_ms()},"args":'
            f'{{"symbol":"GBPUSD","from_ms":{first},"to_ms":{last}}}}}'
        )
        result = await execute(command, ctx, now_ms())
        return f"{result['rederived']} derived bars"

    try:
        return await _with_live(pipeline, sink, now_ms, work)
    finally:
        store.close()


async def _repair_744h(
    root: Path, year: list[OhlcvEvent], calendar: TradingCalendar
) -> tuple[Probe, Sink, float, str]:
    end = REPAIR_NOW_MS - MINUTE_MS  # the repair window ends at the last closed minute
    december = [b for b in year if DEC_2012_MS <= b.open_ms < end]
    # Holes: the first 10 minutes of every 12th hour are missing from the store.
    kept = [
        b for b in december if (b.open_ms // HOUR_MS) % 12 or b.open_ms % HOUR_MS >= 10 * MINUTE_MS
    ]
    store = _store(root, kept)
    for a in range(DEC_2012_MS, end - end % HOUR_MS, HOUR_MS):
        if (a // HOUR_MS) % 12:
            store.mark_fetched("GBPUSD", a, a + HOUR_MS)
        else:
            store.mark_fetched("GBPUSD", a + 10 * MINUTE_MS, a + HOUR_MS)
    store.flush()
    sink = Sink()
    offset = time.time() * 1000 - REPAIR_NOW_MS

    def now_ms() -> int:
        return int(time.time() * 1000 - offset)

    history = YearHistory(year, HISTORY_S)
    pipeline = _pipeline(store, history, calendar, sink, now_ms())
    caps = RepairCaps(repair_window_hours=744, max_bars_per_run=100_000)
    ctx = CommandContext(pipeline, store, sink, dict.fromkeys(SYMBOLS, calendar), TIMEFRAMES, caps)

    async def work() -> str:
        command = _command(
            f'{{"cmd":"tail_guard","req_id":"b2","ts":{now_ms()},'
            '"args":{"symbols":["GBPUSD"],"window_hours":744,"repair":true}}'
        )
        result = await execute(command, ctx, now_ms())
        entry = result["symbols"]["GBPUSD"]
        return (
            f"missing {entry['before']['coverage']['missing']} -> "
            f"{entry['after']['coverage']['missing']}, {history.calls} calls"
        )

    history.delay_s = 0.5  # ~60 gaps x 6 s would take 6 min; 6 s calls are the next scenario
    try:
        return await _with_live(pipeline, sink, now_ms, work)
    finally:
        store.close()


async def _slow_fast_path(
    root: Path, year: list[OhlcvEvent], calendar: TradingCalendar
) -> tuple[Probe, Sink, float, str]:
    store = JsonlStore(root)
    store.open()
    sink = Sink()
    # Live time runs through December 2012 from 10:00 on a weekday, one real second a second.
    offset = time.time() * 1000 - (DEC_2012_MS + 3 * DAY_MS + 10 * HOUR_MS)

    def now_ms() -> int:
        return int(time.time() * 1000 - offset)

    history = YearHistory(year, HISTORY_S)
    start = now_ms() - 3 * MINUTE_MS
    pipeline = _pipeline(store, history, calendar, sink, start - start % MINUTE_MS)

    async def work() -> str:
        await asyncio.sleep(20.0)
        return f"{history.calls} history calls in 20 s"

    try:
        return await _with_live(pipeline, sink, now_ms, work)
    finally:
        store.close()
