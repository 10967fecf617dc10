"""Derived completeness after a crash: the store says which buckets still need deriving.

A store holding final 1m (and their coverage) but not every derived final is exactly what a
kill -9 between the 1m append and the derive leaves. The audit names each such bucket
(`derived.missing`) or each stale one (`derived.mismatch`) and fails; `DerivedBuilder.recover`
reads the same set back from the store and `run` derives it, after which the audit is clean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import pytest

from fxconnector.app.main import main
from fxconnector.core.builders.derive import derive
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import HOUR_MS, MINUTE_MS, Timeframe
from fxconnector.runtime.ingest.polling.derived_builder import DerivedBuilder
from fxconnector.runtime.store.audit import AuditRule, audit
from fxconnector.runtime.store.audit_sources import JsonlScan
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.runtime.store.test_store_suite import make_bar

JAN_1: Final = 1_577_836_800_000  # 2020-01-01T00:00:00Z (a Wednesday)
TFS: Final = (Timeframe.M1, Timeframe.M5, Timeframe.M15, Timeframe.H1)
HOURS: Final = 3
QUIET: Final = JAN_1 + 70 * MINUTE_MS  # the broker had no bar there (history passed it)


def finals_1m() -> list[OhlcvEvent]:
    return [
        make_bar(i, open_ms=JAN_1 + i * MINUTE_MS)
        for i in range(HOURS * 60)
        if JAN_1 + i * MINUTE_MS != QUIET
    ]


def build_store(root: Path, profile: CalendarProfile, *, drop_hour: int | None) -> JsonlStore:
    """Three hours of final 1m, fetched, with every derived final except the hour `drop_hour`
    (and its 5m/15m buckets), as a crash between the 1m append and the derive leaves it."""
    calendar = profile.default
    store = JsonlStore(root)
    store.open()
    bars = finals_1m()
    store.append(bars)
    store.mark_fetched("EURUSD", JAN_1, JAN_1 + HOURS * HOUR_MS)
    lost = (
        (JAN_1 + drop_hour * HOUR_MS, JAN_1 + (drop_hour + 1) * HOUR_MS)
        if drop_hour is not None
        else (0, 0)
    )
    for tf in TFS[1:]:
        store.append([d for d in derive(bars, tf, calendar) if not lost[0] <= d.open_ms < lost[1]])
    store.flush()
    return store


def run_audit(root: Path, profile: CalendarProfile) -> dict[str, int]:
    source = JsonlScan(root)
    source.open()
    try:
        return audit(source, profile).problem_counts
    finally:
        source.close()


def test_a_lost_derived_hour_is_found_by_audit_and_rebuilt_on_recovery(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    root = tmp_path / "ssot"
    store = build_store(root, always_open, drop_hour=1)
    store.close()
    # One 1h, four 15m and twelve 5m buckets of hour 1 are complete (final or quiet minutes,
    # the quiet one included) and have no derived final.
    assert run_audit(root, always_open) == {AuditRule.DERIVED_MISSING.value: 1 + 4 + 12}

    store = JsonlStore(root)
    store.open()
    builder = DerivedBuilder(store, {"EURUSD": always_open.default}, TFS)
    assert builder.incomplete("EURUSD", JAN_1, JAN_1 + HOURS * HOUR_MS) == 17
    assert builder.recover("EURUSD", JAN_1, JAN_1 + HOURS * HOUR_MS) == 17
    assert builder.incomplete("EURUSD", JAN_1, JAN_1 + HOURS * HOUR_MS) == 0  # now waiting here
    published = builder.run(JAN_1 + HOURS * HOUR_MS)
    assert sorted((e.tf.value, e.open_ms) for e in published) == sorted(
        [("1h", JAN_1 + HOUR_MS)]
        + [("15m", JAN_1 + HOUR_MS + k * 15 * MINUTE_MS) for k in range(4)]
        + [("5m", JAN_1 + HOUR_MS + k * 5 * MINUTE_MS) for k in range(12)]
    )
    assert builder.gaps("EURUSD", JAN_1, JAN_1 + HOURS * HOUR_MS) == {}
    hour = store.latest("EURUSD", Timeframe.H1, JAN_1 + HOUR_MS)
    assert hour is not None
    minutes = list(store.bars("EURUSD", Timeframe.M1, JAN_1 + HOUR_MS, JAN_1 + 2 * HOUR_MS))
    assert len(minutes) == 59  # one quiet minute
    assert hour.tick_count == sum(b.tick_count for b in minutes)
    store.close()
    assert run_audit(root, always_open) == {}


def test_a_stale_derived_bar_is_a_gap_and_is_revised(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    root = tmp_path / "ssot"
    store = build_store(root, always_open, drop_hour=None)
    hour = store.latest("EURUSD", Timeframe.H1, JAN_1)
    assert hour is not None
    # A 1m revision whose re-derive was lost in a crash.
    store.append([make_bar(7, open_ms=JAN_1 + 7 * MINUTE_MS, shift=0.001)], reason="correction")
    store.close()
    assert run_audit(root, always_open) == {
        AuditRule.DERIVED_MISMATCH.value: 3  # its 5m, 15m and 1h
    }
    store = JsonlStore(root)
    store.open()
    builder = DerivedBuilder(store, {"EURUSD": always_open.default}, TFS)
    gaps = builder.gaps("EURUSD", JAN_1, JAN_1 + HOURS * HOUR_MS)
    assert gaps == {
        Timeframe.M5: [JAN_1 + 5 * MINUTE_MS],
        Timeframe.M15: [JAN_1],
        Timeframe.H1: [JAN_1],
    }
    builder.recover("EURUSD", JAN_1, JAN_1 + HOURS * HOUR_MS)
    revised = builder.run(JAN_1 + HOURS * HOUR_MS)
    assert {(e.tf, e.rev) for e in revised} == {
        (Timeframe.M5, 1),
        (Timeframe.M15, 1),
        (Timeframe.H1, 1),
    }
    store.close()
    assert run_audit(root, always_open) == {}


def test_a_bucket_with_a_missing_minute_is_not_expected(
    tmp_path: Path, always_open: CalendarProfile
) -> None:
    root = tmp_path / "ssot"
    store = JsonlStore(root)
    store.open()
    store.append(finals_1m())
    # Fetched except minute 70 of the store: that one is missing, not quiet.
    store.mark_fetched("EURUSD", JAN_1, QUIET)
    store.mark_fetched("EURUSD", QUIET + MINUTE_MS, JAN_1 + HOURS * HOUR_MS)
    store.close()
    by_rule = run_audit(root, always_open)
    # No derived bar at all: expected are the config's default timeframes; hour 1 (and its
    # 5m and 15m bucket around minute 70) wait for the missing minute, 4h and 1d are cut.
    per_hour = {"5m": 12, "15m": 4, "30m": 2, "1h": 1}
    assert by_rule == {
        AuditRule.DERIVED_MISSING.value: sum(per_hour.values()) * HOURS - (1 + 1 + 1 + 1)
    }


@pytest.mark.parametrize("broken", [True, False])
def test_the_audit_command_fails_on_a_lost_derived_bar(
    tmp_path: Path,
    always_open: CalendarProfile,
    capsys: pytest.CaptureFixture[str],
    broken: bool,
) -> None:
    root = tmp_path / "ssot"
    build_store(root, always_open, drop_hour=2 if broken else None).close()
    code = main(["audit", "--store", str(root), "--calendar", "always_open", "--json"])
    report = json.loads(capsys.readouterr().out)
    if broken:
        assert code == 1
        assert report["problem_counts"] == {"derived.missing": 17}
        assert {p["tf"] for p in report["problems"]} == {"5m", "15m", "1h"}
    else:
        assert code == 0
        assert report["ok"] is True


def test_the_audit_checks_the_timeframes_it_is_given(
    tmp_path: Path, always_open: CalendarProfile, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ssot"
    build_store(root, always_open, drop_hour=2).close()
    command = ["audit", "--store", str(root), "--calendar", "always_open", "--json"]
    assert main([*command, "--timeframes", "5m, 1h"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["problem_counts"] == {"derived.missing": 12 + 1}
    # 30m was never stored: asked for, every complete 30m bucket lacks its final.
    assert main([*command, "--timeframes", "30m"]) == 1
    assert json.loads(capsys.readouterr().out)["problem_counts"] == {"derived.missing": 6}
    assert main([*command, "--timeframes", "7m"]) == 2
    assert "--timeframes: unknown timeframe '7m'" in capsys.readouterr().err
