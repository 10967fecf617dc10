"""Heavy commands run in bounded slices: other coroutines get the event loop between them.

Not a timing test: a store that logs every 1m read and a coroutine that logs each of its turns
show how much work ran between two turns of the loop, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.model.bar import OhlcvEvent, Source, StoredFinal
from fxconnector.core.model.command import Command
from fxconnector.core.time_geom import DAY_MS, MINUTE_MS, Timeframe
from fxconnector.core.validation.ticks import TickRails
from fxconnector.core.validation.validator import validate_command
from fxconnector.runtime.ingest.commands.handlers import CommandContext, RepairCaps, execute
from fxconnector.runtime.ingest.polling.pipeline import DERIVE_SLICE_MINUTES, Pipeline
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.sinks import RecordingSink

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z, Monday
DAYS = 6
TFS = (Timeframe.M1, Timeframe.M5, Timeframe.H1, Timeframe.D1)


class LoggingStore(JsonlStore):
    """The JSONL store, logging the minutes of 1m finals each read covers."""

    def __init__(self, root: Path, log: list[tuple[str, int]]) -> None:
        super().__init__(root)
        self.log = log

    def bars(
        self, symbol: str, tf: Timeframe, from_ms: int | None = None, to_ms: int | None = None
    ) -> Iterator[StoredFinal]:
        if tf is Timeframe.M1:
            assert from_ms is not None
            assert to_ms is not None
            self.log.append(("read", (to_ms - from_ms) // MINUTE_MS))
        return super().bars(symbol, tf, from_ms, to_ms)


async def _no_history(symbol: str, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
    raise AssertionError("these commands need no broker")


def _bar(open_ms: int) -> OhlcvEvent:
    price = 1.1 + (open_ms // MINUTE_MS % 13) * 1e-5
    return OhlcvEvent(
        symbol="EURUSD",
        tf=Timeframe.M1,
        open_ms=open_ms,
        close_ms=open_ms + MINUTE_MS - 1,
        open=price,
        high=price + 1e-4,
        low=price - 1e-4,
        close=price,
        volume=3,
        tick_count=3,
        complete=True,
        source=Source.HISTORY,
        event_ts=open_ms + MINUTE_MS - 1,
        rev=0,
    )


Setup = tuple[CommandContext, LoggingStore, RecordingSink, list[tuple[str, int]]]


@pytest.fixture
def setup(tmp_path: Path, always_open: CalendarProfile) -> Iterator[Setup]:
    log: list[tuple[str, int]] = []
    store = LoggingStore(tmp_path / "ssot", log)
    store.open()
    store.append([_bar(m) for m in range(T0, T0 + DAYS * DAY_MS, MINUTE_MS)])
    store.mark_fetched("EURUSD", T0, T0 + DAYS * DAY_MS)
    store.flush()
    calendars = {"EURUSD": always_open.default}
    sink = RecordingSink()
    pipeline = Pipeline(
        history=_no_history,
        store=store,
        calendars=calendars,
        timeframes=TFS,
        spec=BarSpec(),
        rails=TickRails(frozenset({"EURUSD"})),
        sink=sink,
        start_ms={"EURUSD": T0 + DAYS * DAY_MS},
    )
    yield CommandContext(pipeline, store, sink, calendars, TFS, RepairCaps()), store, sink, log
    store.close()


def _command(text: str) -> Command:
    checked = validate_command(text)
    assert checked.value is not None, checked.problems
    return checked.value


async def _interleaved(ctx: CommandContext, command: Command, log: list[tuple[str, int]]) -> None:
    """Run `command` beside a coroutine that logs a turn each time it gets the loop."""
    done = asyncio.Event()

    async def other() -> None:
        while not done.is_set():
            log.append(("turn", 0))
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    await asyncio.sleep(0)
    now = T0 + (DAYS + 1) * DAY_MS
    try:
        await execute(command, ctx, now)
    finally:
        done.set()
        await task


def _reads_between_turns(log: list[tuple[str, int]]) -> list[int]:
    """Minutes of 1m read between two consecutive turns of the other coroutine."""
    out, current = [], 0
    for kind, minutes in log:
        if kind == "turn":
            out.append(current)
            current = 0
        else:
            current += minutes
    return [*out, current]


def test_rebuild_derived_yields_between_bounded_slices(setup: Setup) -> None:
    ctx, _, sink, log = setup
    log.clear()
    command = _command(
        f'{{"cmd":"rebuild_derived","req_id":"s1","ts":{T0},"args":{{"symbol":"EURUSD",'
        f'"from_ms":{T0},"to_ms":{T0 + DAYS * DAY_MS}}}}}'
    )
    asyncio.run(_interleaved(ctx, command, log))

    # Every bucket of the six days was derived and published ...
    per_day = {Timeframe.M5: 288, Timeframe.H1: 24, Timeframe.D1: 1}
    for tf, count in per_day.items():
        assert sum(1 for e in sink.finals_seen if e.tf is tf) == DAYS * count
    # ... in slices: the other coroutine ran between them, and no slice read more than the
    # slice budget plus one bucket (a bucket is never cut).
    between = _reads_between_turns(log)
    total = sum(minutes for kind, minutes in log if kind == "read")
    # Each minute read at least once, and at most once per timeframe (the timeframes of a
    # slice share one read where their buckets overlap).
    assert DAYS * 1440 <= total <= DAYS * 1440 * len(per_day)
    assert max(between) <= DERIVE_SLICE_MINUTES + 1440
    assert sum(1 for kind, _ in log if kind == "turn") >= total // (DERIVE_SLICE_MINUTES + 1440)


def test_tail_guard_audit_reads_a_day_between_turns(setup: Setup) -> None:
    ctx, _, _, log = setup
    log.clear()
    command = _command(
        f'{{"cmd":"tail_guard","req_id":"s2","ts":{T0},'
        f'"args":{{"symbols":["EURUSD"],"window_hours":{DAYS * 24},"repair":false}}}}'
    )
    asyncio.run(_interleaved(ctx, command, log))

    between = _reads_between_turns(log)
    assert sum(minutes for kind, minutes in log if kind == "read") >= DAYS * 1440
    assert max(between) <= 1440
