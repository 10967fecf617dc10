"""The merge policy: every shared vector file through BarBook, plus its properties."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fxconnector.client.merge import BarBook, ChangeKind, IgnoreReason
from fxconnector.core.errors import ContractViolation
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.core.validation.validator import validate_event
from tests.conftest import calendar_profile

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "merge"
VECTOR_FILES = sorted(VECTORS.glob("*.json"))
FIELDS = list(OhlcvEvent.__struct_fields__)
T0 = 1_549_238_400_000  # 2019-02-04 00:00 UTC, a Monday: EURUSD trades
M1 = Timeframe.M1


def checked_event(raw: dict[str, Any]) -> OhlcvEvent:
    """A vector's event: canonical (field order and encoding) and valid under fx_ny."""
    assert list(raw) == FIELDS
    checked = validate_event(raw, calendar_profile("fx_ny"))
    assert checked.ok, checked.problems
    assert checked.value is not None
    assert encode(checked.value) == json.dumps(raw, separators=(",", ":")).encode()
    return checked.value


def as_json(bars: list[OhlcvEvent]) -> list[Any]:
    return [msgspec.to_builtins(bar) for bar in bars]


def test_enough_vector_files() -> None:
    assert len(VECTOR_FILES) >= 8


@pytest.mark.parametrize("path", VECTOR_FILES, ids=lambda path: path.stem)
def test_vector(path: Path) -> None:
    vector = json.loads(path.read_text())
    assert list(vector) == ["name", "description", "steps"]
    assert vector["name"] == path.stem
    book = BarBook()
    for number, step in enumerate(vector["steps"]):
        if "event" in step:
            assert list(step) == ["event", "change", "expect"]
            event = checked_event(step["event"])
            change = book.apply(event)
            got = {"kind": change.kind.value, "reason": change.reason}
            assert got == step["change"], f"step {number}"
            symbol, tf = event.symbol, event.tf
        else:
            assert list(step) == ["snapshot", "expect"]
            snapshot = step["snapshot"]
            symbol, tf = snapshot["symbol"], Timeframe(snapshot["tf"])
            book.load_snapshot(symbol, tf, [checked_event(bar) for bar in snapshot["bars"]])
        for bar in step["expect"]:
            checked_event(bar)
        assert as_json(book.bars(symbol, tf)) == step["expect"], f"step {number}"


# --- properties -------------------------------------------------------------------------------

KEYS = 6


def final(k: int, rev: int) -> OhlcvEvent:
    """The final of key k at revision rev: content is a function of (k, rev), as in the SSOT."""
    base = 1.1456 + k * 0.0001
    return OhlcvEvent(
        symbol="EURUSD",
        tf=M1,
        open_ms=T0 + k * MINUTE_MS,
        close_ms=T0 + (k + 1) * MINUTE_MS - 1,
        open=base,
        high=base + 0.0002 + rev * 0.00001,
        low=base - 0.0001,
        close=base + 0.0001,
        volume=100 + rev,
        tick_count=100 + rev,
        complete=True,
        source=Source.HISTORY,
        event_ts=T0 + (k + 1) * MINUTE_MS - 1,
        rev=rev,
    )


def preview(k: int, offset_ms: int, ticks: int) -> OhlcvEvent:
    base = 1.1456 + k * 0.0001
    return OhlcvEvent(
        symbol="EURUSD",
        tf=M1,
        open_ms=T0 + k * MINUTE_MS,
        close_ms=T0 + (k + 1) * MINUTE_MS - 1,
        open=base,
        high=base + 0.0001 + ticks * 0.000001,
        low=base - 0.0001,
        close=base + 0.00005,
        volume=ticks,
        tick_count=ticks,
        complete=False,
        source=Source.STREAM,
        event_ts=T0 + k * MINUTE_MS + offset_ms,
        rev=0,
    )


finals_st = st.builds(final, st.integers(0, KEYS - 1), st.integers(0, 3))
previews_st = st.builds(
    preview, st.integers(0, KEYS - 1), st.integers(0, MINUTE_MS - 1), st.integers(1, 200)
)
events_st = st.lists(st.one_of(finals_st, previews_st), min_size=1, max_size=40)


def expected_finals(events: list[OhlcvEvent]) -> list[OhlcvEvent]:
    best: dict[int, OhlcvEvent] = {}
    for event in events:
        if event.complete and (event.open_ms not in best or event.rev > best[event.open_ms].rev):
            best[event.open_ms] = event
    return [best[open_ms] for open_ms in sorted(best)]


def applied(events: list[OhlcvEvent], book: BarBook | None = None) -> BarBook:
    book = book if book is not None else BarBook()
    for event in events:
        book.apply(event)
    return book


@given(events_st, st.data())
def test_finals_do_not_depend_on_delivery_order(
    events: list[OhlcvEvent], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(events))
    expected = expected_finals(events)
    assert applied(events).finals("EURUSD", M1) == expected
    assert applied(shuffled).finals("EURUSD", M1) == expected


@given(events_st)
def test_a_preview_never_changes_a_key_with_a_final(events: list[OhlcvEvent]) -> None:
    book = BarBook()
    for event in events:
        held = book.get("EURUSD", M1, event.open_ms)
        finals_before = book.finals("EURUSD", M1)
        change = book.apply(event)
        if not event.complete:
            assert book.finals("EURUSD", M1) == finals_before
            if held is not None and held.complete:
                assert change.kind is ChangeKind.IGNORED
                assert change.reason is IgnoreReason.NO_MIX
                assert book.get("EURUSD", M1, event.open_ms) is held


@given(events_st)
def test_applying_twice_changes_nothing(events: list[OhlcvEvent]) -> None:
    book = applied(events)
    before = book.bars("EURUSD", M1)
    assert all(not book.apply(event).changed for event in events)
    assert book.bars("EURUSD", M1) == before


@given(events_st, st.data())
def test_snapshot_then_overlapping_stream_converges(
    events: list[OhlcvEvent], data: st.DataObject
) -> None:
    # A consumer loads a snapshot taken after `cut` events and re-reads the stream from an
    # older cursor (the MIN rule): it must end with the same finals as one that saw it all.
    cut = data.draw(st.integers(0, len(events)))
    reread_from = data.draw(st.integers(0, cut))
    snapshot = applied(events[:cut]).finals("EURUSD", M1)
    book = BarBook()
    book.load_snapshot("EURUSD", M1, snapshot)
    applied(events[reread_from:], book)
    assert book.finals("EURUSD", M1) == expected_finals(events)


@given(events_st)
def test_a_preview_replaces_a_preview_only_when_newer_in_both_terms(
    events: list[OhlcvEvent],
) -> None:
    # A preview never goes back in ticks or in its latest tick's time (a restarted producer's
    # thinner preview never collapses a fuller one).
    book = BarBook()
    for event in events:
        change = book.apply(event)
        previous = change.previous
        if previous is None or previous.complete or event.complete:
            continue
        if change.changed:
            assert event.tick_count >= previous.tick_count
            assert event.event_ts >= previous.event_ts
        elif event.event_ts > previous.event_ts and event.tick_count < previous.tick_count:
            # (a preview of a bucket older than the newest final is late before anything else)
            assert change.reason in (IgnoreReason.THINNER_PREVIEW, IgnoreReason.LATE_PREVIEW)


# --- examples beyond the vectors --------------------------------------------------------------


def test_snapshot_rejects_bars_that_are_not_finals_of_the_series() -> None:
    book = BarBook()
    book.apply(final(0, 0))
    with pytest.raises(ContractViolation, match="not one of its finals"):
        book.load_snapshot("EURUSD", M1, [final(1, 0), preview(2, 10, 3)])
    with pytest.raises(ContractViolation):
        book.load_snapshot("GBPUSD", M1, [final(1, 0)])
    assert book.bars("EURUSD", M1) == [final(0, 0)]  # untouched by the refused loads


def test_snapshot_keeps_the_highest_rev_of_each_key() -> None:
    book = BarBook()
    book.load_snapshot("EURUSD", M1, [final(1, 2), final(0, 0), final(1, 1)])
    assert book.finals("EURUSD", M1) == [final(0, 0), final(1, 2)]
    assert book.newest_final_ms("EURUSD", M1) == T0 + MINUTE_MS


def test_max_bars_keeps_the_newest_and_ignores_older_keys() -> None:
    book = BarBook(max_bars=3)
    for k in range(5):
        assert book.apply(final(k, 0)).kind is ChangeKind.INSERTED
    assert [bar.open_ms for bar in book.bars("EURUSD", M1)] == [
        T0 + k * MINUTE_MS for k in (2, 3, 4)
    ]
    old = book.apply(final(0, 1))
    assert old.reason is IgnoreReason.OUT_OF_WINDOW
    assert book.apply(final(2, 1)).kind is ChangeKind.REVISED
    assert book.apply(preview(5, 100, 4)).kind is ChangeKind.INSERTED
    assert len(book.bars("EURUSD", M1)) == 3
    with pytest.raises(ValueError, match="max_bars"):
        BarBook(max_bars=0)


def test_change_reports_the_bar_it_replaced() -> None:
    book = BarBook()
    first = preview(0, 1000, 3)
    book.apply(first)
    change = book.apply(final(0, 0))
    assert change.kind is ChangeKind.REPLACED
    assert change.previous == first
    assert book.series() == [("EURUSD", M1)]
    assert book.bars("GBPUSD", M1) == []
    assert book.get("GBPUSD", M1, T0) is None
    assert book.newest_final_ms("GBPUSD", M1) is None
