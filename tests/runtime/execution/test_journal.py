"""The execution journal: durable batches, replay, torn tail, corruption, one writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.errors import ContractViolation, StoreCorrupt, StoreError, StoreLocked
from fxconnector.core.model.exec_event import (
    ExecEvent,
    StateSource,
    TradingState,
    TradingStateEvent,
)
from fxconnector.execution.messages import OrderFilled
from fxconnector.runtime.execution.journal import exec_journal
from tests.execution.helpers import OPEN_MS, intent, make_core, quote


def some_batches(fx_ny: CalendarProfile) -> list[tuple[ExecEvent, ...]]:
    core = make_core(fx_ny)
    core.on_price(quote())
    batches = [core.submit(intent(f"i{n}", units=100), OPEN_MS).output.events for n in range(3)]
    batches.append(core.on_gateway_event(OrderFilled("i1", OPEN_MS, "F", 100, 1.1), OPEN_MS).events)
    return batches


def test_appended_batches_come_back_in_order(tmp_path: Path, fx_ny: CalendarProfile) -> None:
    batches = some_batches(fx_ny)
    with exec_journal(tmp_path) as journal:
        assert journal.open() == []
        for batch in batches:
            journal.append(batch)
        journal.append(())
    with exec_journal(tmp_path) as journal:
        events = journal.open()
    assert events == [e for batch in batches for e in batch]
    assert (tmp_path / "journal.jsonl").read_bytes().count(b"\n") == len(batches)
    assert oct((tmp_path / "journal.jsonl").stat().st_mode & 0o777) == "0o600"
    core = make_core(fx_ny)
    core.replay(events)
    assert core.position("alice", "EURUSD").units == 100


def test_a_torn_last_line_is_cut_whole_and_reported(tmp_path: Path, fx_ny: CalendarProfile) -> None:
    batches = some_batches(fx_ny)
    with exec_journal(tmp_path) as journal:
        journal.open()
        for batch in batches:
            journal.append(batch)
    path = tmp_path / "journal.jsonl"
    data = path.read_bytes()
    last_line_start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: last_line_start + 25])  # the fill batch, cut mid-line
    with exec_journal(tmp_path) as journal:
        events = journal.open()
        assert journal.torn == [f"{path}: dropped 25 bytes"]
        # The cut batch is gone whole: no fill without its position and order events.
        assert events == [e for batch in batches[:-1] for e in batch]
        journal.append(batches[-1])
    with exec_journal(tmp_path) as journal:
        assert journal.open() == [e for batch in batches for e in batch]


def test_a_bad_line_inside_is_corruption(tmp_path: Path, fx_ny: CalendarProfile) -> None:
    with exec_journal(tmp_path) as journal:
        journal.open()
        for batch in some_batches(fx_ny):
            journal.append(batch)
    path = tmp_path / "journal.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"kind":"order"', b'"kind":"odrer"')
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(StoreCorrupt, match=r"journal\.jsonl:2: "):
        exec_journal(tmp_path).open()


def test_one_writer(tmp_path: Path) -> None:
    with exec_journal(tmp_path) as first:
        first.open()
        with pytest.raises(StoreLocked, match="held by pid"):
            exec_journal(tmp_path).open()
    with exec_journal(tmp_path) as again:
        assert again.open() == []


def test_appending_to_a_closed_journal_is_an_error(tmp_path: Path, fx_ny: CalendarProfile) -> None:
    journal = exec_journal(tmp_path)
    with pytest.raises(StoreError, match="not open for writing"):
        journal.append(some_batches(fx_ny)[0])


def test_a_batch_that_would_not_decode_is_refused_unwritten(tmp_path: Path) -> None:
    bad = TradingStateEvent(
        seq=1, ts=OPEN_MS, scope="two words", state=TradingState.HALTED, source=StateSource.AUTO
    )
    with exec_journal(tmp_path) as journal:
        journal.open()
        with pytest.raises(ContractViolation, match="does not decode"):
            journal.append([bad])
    assert (tmp_path / "journal.jsonl").read_bytes() == b""
