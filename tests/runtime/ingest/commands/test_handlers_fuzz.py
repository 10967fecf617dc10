"""Fuzzing command arguments (issue 11 p6): any command that passes `commands_v1` runs to DONE
or FAILED with an error message, never an unexpected exception, and leaves a store that opens
clean. Arguments are drawn around a live sim run (the command's real neighbourhood) and at the
edges: empty and reversed ranges, unaligned times, the epoch and the far end of the supported
range, the future, unknown symbols, every timeframe, the largest windows. Spans are kept to two
days so 200 examples stay quick; a long range is work, not bad input.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.model.command import Command
from fxconnector.core.model.status import CommandState
from fxconnector.core.time_geom import MINUTE_MS, RANGE_END_MS, Timeframe
from fxconnector.core.validation.ticks import TickRails
from fxconnector.core.validation.validator import validate_command
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.ingest.broker.sim.broker import SimBroker
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator
from fxconnector.runtime.ingest.commands.handlers import CommandContext, RepairCaps
from fxconnector.runtime.ingest.commands.runner import CommandRunner
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.conftest import calendar_profile
from tests.sinks import RecordingSink

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z
NOW = T0 + 6 * 3_600_000
TFS = (Timeframe.M1, Timeframe.M5, Timeframe.H1, Timeframe.D1)
DAY = 86_400_000

anchor = st.one_of(
    st.integers(T0 - 2 * DAY, NOW + DAY),
    st.sampled_from([0, 1, MINUTE_MS - 1, T0, NOW, NOW + 1, RANGE_END_MS - DAY, RANGE_END_MS - 1]),
)
span = st.one_of(st.integers(-3 * MINUTE_MS, 2 * DAY), st.sampled_from([0, 1, -1, MINUTE_MS]))
symbol = st.sampled_from(["EURUSD", "EURUSD", "GBPUSD", "XAUUSD"])
symbols = st.lists(symbol, min_size=1, max_size=3)


@st.composite
def commands(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(anchor)
    end = min(max(start + draw(span), 0), RANGE_END_MS - 1)
    name = draw(
        st.sampled_from(["warmup", "backfill", "tail_guard", "republish_tail", "rebuild_derived"])
    )
    options: dict[str, dict[str, Any]] = {
        "warmup": {"symbols": draw(symbols), "lookback_mins": draw(st.integers(1, 2 * 1440))},
        "backfill": {"symbol": draw(symbol), "from_ms": start, "to_ms": end},
        "tail_guard": {
            "symbols": draw(symbols),
            "window_hours": draw(st.sampled_from([1, 2, 24, 48])),
            "repair": draw(st.booleans()),
        },
        "republish_tail": {
            "symbol": draw(symbol),
            "tf": draw(st.sampled_from([tf.value for tf in Timeframe])),
            "bars": draw(st.integers(1, 100_000)),
        },
        "rebuild_derived": {"symbol": draw(symbol), "from_ms": start, "to_ms": end},
    }
    return {"cmd": name, "req_id": "fuzz-1", "ts": NOW, "args": options[name]}


class _World:
    """A sim run of six hours into a store, built once; each example works on a copy."""

    root: Path | None = None

    @classmethod
    def store_copy(cls, into: Path) -> Path:
        if cls.root is None:
            cls.root = Path(tempfile.mkdtemp(prefix="cmd-fuzz-")) / "ssot"
            ctx, store = _context(cls.root, T0)
            asyncio.run(ctx.pipeline.advance(NOW))
            store.close()
        return Path(shutil.copytree(cls.root, into / "ssot"))


def _context(root: Path, start_ms: int) -> tuple[CommandContext, JsonlStore]:
    calendars = {"EURUSD": calendar_profile("always_open").default}
    clock = ManualClock(NOW)
    broker = SimBroker(TickGenerator(7, calendars, 30), ["EURUSD"], clock, BarSpec(), calendars)
    store = JsonlStore(root)
    store.open()
    sink = RecordingSink()
    pipeline = Pipeline(
        history=broker.history_1m,
        store=store,
        calendars=calendars,
        timeframes=TFS,
        spec=BarSpec(),
        rails=TickRails(frozenset({"EURUSD"})),
        sink=sink,
        start_ms={"EURUSD": start_ms},
    )
    return CommandContext(pipeline, store, sink, calendars, TFS, RepairCaps()), store


@given(payload=commands())
def test_any_valid_command_ends_done_or_failed(payload: dict[str, Any]) -> None:
    checked = validate_command(payload)
    if checked.value is None:  # the draw broke the schema (e.g. a range past its end)
        assert checked.problems
        return
    command: Command = checked.value
    with tempfile.TemporaryDirectory() as tmp:
        ctx, store = _context(_World.store_copy(Path(tmp)), NOW)
        try:
            runner = CommandRunner(ctx, ManualClock(NOW))
            last = asyncio.run(runner.run(command))
            assert last.state in (CommandState.DONE, CommandState.FAILED)
            assert last.result is not None
            if last.state is CommandState.FAILED:
                assert str(last.result["error"]).strip()
            msgspec.json.encode(last)  # what status and the CLI print
        finally:
            store.close()
        report = JsonlStore(Path(tmp) / "ssot").open()
        assert report.corrupt_lines == []
