"""Final 1m latency (issue 12 point 3): from the broker's history response to the final durable in
the store and acknowledged by Redis, at 1, 100 and 200 symbols.

Real parts: the JSONL store in a temporary folder (fsync on the real disk), an embedded Redis
(unix socket), the real `RedisSurface` publishing with its Lua script, the real `HistoryBudget`
(one call in flight). The broker is a stub answering one bar per asked minute after `CALL_S`
(a network round trip); the response time is taken when its answer is returned, the ack time in
the surface's `on_published` hook (after Redis answered the pipelined script calls).

- subject: `Pipeline.advance` at the minute boundary plus the safety delay (every timeframe
  configured, so derivation runs as in production);
- baseline, same run, same store, surface and budget, on its own symbols, interleaved round by
  round: the pre-issue-12 order of work by hand: every symbol fetched one after another and
  appended, one flush for all, then every final handed to the surface at once.

Figures: p50 / p99 / max over every (symbol, minute) of `ROUNDS` minutes, pooled over `REPEATS`
runs, and the median of the runs' p99 with its min-max. Each repeat runs every count on each
medium, interleaved: the store on the real disk (a folder under the current directory) and on
tmpfs (/dev/shm, when there is one), so the fsync's share shows. The breakdown line of each run
splits response -> durable (check, append, group fsync) from durable -> acked (the publisher's
Redis round trip) and gives the store's flush times. Run alone with
`python -m bench.bench_final_latency`, or in `make bench` (one row per medium and count: the
ratio is the baseline's median p99 / the pipeline's).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from bench.runner import Row
from fxconnector.config.calendars import load_calendar
from fxconnector.config.secrets import Secrets
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import MINUTE_MS, TIMEFRAMES, Timeframe
from fxconnector.core.validation.ticks import TickRails
from fxconnector.runtime.clock import ManualClock, SystemClock
from fxconnector.runtime.governance.rails import BudgetConfig, HistoryBudget, Priority
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.publish.embedded import EmbeddedRedis
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.redis_connect import connect_redis
from fxconnector.runtime.publish.redis_surface import RedisSurface
from fxconnector.runtime.store.cache_tail import TailCache
from fxconnector.runtime.store.ssot_jsonl import JsonlStore

#: 2019-02-04T00:00:00Z, a Monday.
T0: Final = 1_549_238_400_000
COUNTS: Final = (1, 100, 200)
ROUNDS: Final = 12
REPEATS: Final = 3
CALL_S: Final = 0.001
DELAY_MS: Final = 2_000
TARGET_MS: Final = 5.0
#: tmpfs for the store's second medium (the first is the real disk under the current directory).
TMPFS: Final = Path("/dev/shm")  # noqa: S108 - a private TemporaryDirectory is made in it
Key = tuple[str, int]


class StubBroker:
    """One bar per asked minute after a round trip; remembers when each answer was returned."""

    def __init__(self) -> None:
        self.responded: dict[Key, float] = {}

    async def __call__(self, symbol: str, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
        await asyncio.sleep(CALL_S)
        bars = [_bar(symbol, m) for m in range(from_ms, to_ms, MINUTE_MS)]
        now = time.perf_counter()
        for bar in bars:
            self.responded[(symbol, bar.open_ms)] = now
        return bars


def _bar(symbol: str, open_ms: int) -> OhlcvEvent:
    return OhlcvEvent(
        symbol=symbol,
        tf=Timeframe.M1,
        open_ms=open_ms,
        close_ms=open_ms + MINUTE_MS - 1,
        open=1.1,
        high=1.1002,
        low=1.0999,
        close=1.1001,
        volume=4,
        tick_count=4,
        complete=True,
        source=Source.HISTORY,
        event_ts=open_ms + MINUTE_MS - 1,
        rev=0,
    )


class HandOver:
    """The sink the pipeline sees: notes when each 1m final was handed over (durable), then
    passes it to the surface."""

    def __init__(self, surface: RedisSurface, handed: dict[Key, float]) -> None:
        self._surface = surface
        self._handed = handed

    def finals(self, events: Sequence[OhlcvEvent]) -> None:
        now = time.perf_counter()
        for event in events:
            if event.tf is Timeframe.M1:
                self._handed.setdefault((event.symbol, event.open_ms), now)
        self._surface.finals(events)

    def previews(self, events: Sequence[OhlcvEvent]) -> None:
        self._surface.previews(events)


class TimedStore(JsonlStore):
    """The JSONL store, timing each flush (its fsyncs) for the breakdown."""

    flushes_ms: list[float]

    def flush(self) -> None:
        started = time.perf_counter()
        super().flush()
        self.flushes_ms.append((time.perf_counter() - started) * 1000)


def _stats(samples_ms: Sequence[float]) -> tuple[float, float, float]:
    ordered = sorted(samples_ms)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered), p99, ordered[-1]


async def _measure(
    count: int, root: Path, url: str, medium: str = "disk"
) -> tuple[list[float], list[float]]:
    """(subject, baseline) latencies in ms for `count` symbols, the store under `root`."""
    subject_symbols = [f"S{i:05d}" for i in range(count)]
    baseline_symbols = [f"B{i:05d}" for i in range(count)]
    calendar = load_calendar("always_open", now_ms=T0).default
    calendars = dict.fromkeys([*subject_symbols, *baseline_symbols], calendar)
    store = TimedStore(root / f"ssot{count}")
    store.flushes_ms = []
    store.open()
    client = connect_redis(url, Secrets())
    await client.flushall()
    acked: dict[Key, float] = {}
    handed: dict[Key, float] = {}
    published = asyncio.Event()

    def on_published(event: OhlcvEvent, _latency_s: float) -> None:
        if event.tf is Timeframe.M1:
            acked.setdefault((event.symbol, event.open_ms), time.perf_counter())
        published.set()

    surface = RedisSurface(
        client,
        SurfaceKeys("bench"),
        TailCache(500),
        events_retention_s=300,
        snapshot_bars=500,
        preview_interval_ms=250,
        clock=SystemClock(),
        on_published=on_published,
    )
    publisher = asyncio.create_task(surface.run())
    budget = HistoryBudget(SystemClock(), BudgetConfig(requests_per_min=10**6, burst=10**6))
    broker = StubBroker()
    clock = ManualClock(T0)
    pipeline = Pipeline(
        history=broker,
        store=store,
        calendars=calendars,
        timeframes=TIMEFRAMES,
        spec=BarSpec(),
        rails=TickRails(frozenset(subject_symbols)),
        sink=HandOver(surface, handed),
        start_ms=dict.fromkeys(subject_symbols, T0),
        safety_delay_ms=DELAY_MS,
        budget=budget,
        settle=surface.settle,  # as composition wires it
    )

    async def acks(symbols: Sequence[str], minute: int) -> None:
        while not all((s, minute) in acked for s in symbols):
            published.clear()
            await published.wait()

    async def baseline_round(minute: int) -> None:
        appended: list[OhlcvEvent] = []
        for symbol in baseline_symbols:
            async with budget.slot("baseline", Priority.FAST):
                bars = await broker(symbol, minute, minute + MINUTE_MS)
            appended.extend(r.stored for r in store.append(bars))
        await asyncio.to_thread(store.flush)
        HandOver(surface, handed).finals(appended)

    subject: list[float] = []
    baseline: list[float] = []
    durable: list[float] = []
    to_ack: list[float] = []
    try:
        for round_ in range(ROUNDS + 1):  # round 0 warms up (connections, script, caches)
            minute = T0 + round_ * MINUTE_MS
            clock.set(minute + MINUTE_MS + DELAY_MS)
            await pipeline.advance(clock.now_ms())
            await acks(subject_symbols, minute)
            await baseline_round(minute)
            await acks(baseline_symbols, minute)
            if round_:
                durable.extend(
                    (handed[(s, minute)] - broker.responded[(s, minute)]) * 1000
                    for s in subject_symbols
                )
                to_ack.extend(
                    (acked[(s, minute)] - handed[(s, minute)]) * 1000 for s in subject_symbols
                )
                for symbols, out in ((subject_symbols, subject), (baseline_symbols, baseline)):
                    out.extend(
                        (acked[(s, minute)] - broker.responded[(s, minute)]) * 1000 for s in symbols
                    )
    finally:
        await surface.stop()
        await publisher
        await client.aclose()
        store.close()
    p50, p99, top = _stats(durable)
    a50, a99, atop = _stats(to_ack)
    f50, f99, ftop = _stats(store.flushes_ms)
    print(
        f"  {medium} {count} symbols: response -> durable p50 {p50:.2f} p99 {p99:.2f} max "
        f"{top:.2f}; durable -> acked p50 {a50:.2f} p99 {a99:.2f} max {atop:.2f}; "
        f"{len(store.flushes_ms)} flushes p50 {f50:.2f} p99 {f99:.2f} max {ftop:.2f} ms"
    )
    return subject, baseline


Runs = list[tuple[list[float], list[float]]]
Case = tuple[str, int]  # (medium, symbol count)


def measure(repeats: int = REPEATS) -> dict[Case, Runs]:
    """(subject, baseline) latencies per repeat, per medium and symbol count, interleaved: each
    repeat runs every count on every medium."""
    with contextlib.ExitStack() as stack:
        disk = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=Path.cwd())))
        media = {"disk": disk}
        if TMPFS.is_dir():
            media["tmpfs"] = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=TMPFS)))
        server = stack.enter_context(EmbeddedRedis(disk / "redis"))
        out: dict[Case, Runs] = {(m, count): [] for m in media for count in COUNTS}
        for repeat in range(repeats):
            for count in COUNTS:
                for medium, tmp in media.items():
                    root = tmp / f"r{repeat}"
                    root.mkdir(exist_ok=True)
                    runs = asyncio.run(_measure(count, root, server.url, medium))
                    out[(medium, count)].append(runs)
    return out


def run() -> list[Row]:
    rows = []
    for (medium, count), runs in measure().items():
        subject_p99 = statistics.median(_stats(s)[1] for s, _ in runs)
        baseline_p99 = statistics.median(_stats(b)[1] for _, b in runs)
        _print(medium, count, runs)
        rows.append(
            Row(
                f"final 1m history->acked p99, {count} sym, {medium}",
                1,
                "finals",
                subject_p99 / 1000,
                "serial, one flush, publish after all",
                baseline_p99 / 1000,
            )
        )
    return rows


def _print(medium: str, count: int, runs: Runs) -> None:
    subject = [x for s, _ in runs for x in s]
    baseline = [x for _, b in runs for x in b]
    p50, p99, top = _stats(subject)
    b50, b99, btop = _stats(baseline)
    p50s = sorted(_stats(s)[0] for s, _ in runs)
    p99s = sorted(_stats(s)[1] for s, _ in runs)
    b99s = sorted(_stats(b)[1] for _, b in runs)
    median = statistics.median(p99s)
    verdict = "meets" if median <= TARGET_MS else f"misses by {median - TARGET_MS:.1f} ms"
    print(
        f"final latency {medium:>5} {count:>4} symbols, {len(runs)} runs of {len(runs[0][0])} "
        f"finals:\n"
        f"  pipeline p50 {p50:6.2f} p99 {p99:6.2f} max {top:6.2f} ms; per run: p50 median "
        f"{statistics.median(p50s):.2f} [{p50s[0]:.2f}-{p50s[-1]:.2f}], p99 median "
        f"{median:.2f} [{p99s[0]:.2f}-{p99s[-1]:.2f}]\n"
        f"  baseline p50 {b50:6.2f} p99 {b99:6.2f} max {btop:6.2f} ms; p99 per run median "
        f"{statistics.median(b99s):.2f} [{b99s[0]:.2f}-{b99s[-1]:.2f}]\n"
        f"  target p99 <= {TARGET_MS:g} ms: {verdict}"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    for (medium, count), runs in measure(
        int(sys.argv[1]) if len(sys.argv) > 1 else REPEATS
    ).items():
        _print(medium, count, runs)
