"""The replay drives give one output, on real Dukascopy ticks across a weekend and a holiday:
tick by tick (the live path, previews and all), minute by minute (full speed through the
pipeline, 1m from the tick columns) and in bulk (full speed into a symbol the store has never
held: columns stored a day at a time) write the same day files, byte for byte, and the same
coverage, and publish the same finals. The two pipeline drives write even the coverage lines
alike; the bulk one writes a line per UTC day, not per hour of tick time."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import msgspec
import pytest

from fxconnector.core.builders.spec import BarSpec, VolumeMode
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.tick import TickBatch
from fxconnector.core.time_geom import TIMEFRAMES, Timeframe, to_ms
from fxconnector.runtime.ingest.broker.replay.readers import read_ticks
from fxconnector.runtime.ingest.replay import ReplaySummary, run_replay
from fxconnector.runtime.store.rules import merge_all
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.sinks import RecordingSink

NOW_MS = to_ms(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
#: A bar of the replayed symbol a year before the replay: the store holds the symbol, so a
#: full-speed replay takes the pipeline (the minute drive), not the bulk path.
SEED = OhlcvEvent(
    "GBPJPY", Timeframe.M1, 1323000000000, 1323000059999, 130.0, 130.1, 129.9, 130.05, 3, 3,
    True, Source.HISTORY, 1323000059999, 0,
)  # fmt: skip
SEED_FILE = "GBPJPY/1m/2011-12-04.jsonl"


def _replay(
    batch: TickBatch,
    profile: CalendarProfile,
    root: Path,
    spec: BarSpec,
    *,
    per_tick: bool,
    from_ms: int | None = None,
    to_ms: int | None = None,
    seeded: bool = True,
) -> tuple[dict[str, bytes], list[OhlcvEvent], ReplaySummary]:
    store = JsonlStore(root)
    store.open()
    if seeded:
        store.append([SEED])
    sink = RecordingSink()
    summary = asyncio.run(
        run_replay(
            batch,
            calendar=profile.for_symbol(batch.symbol),
            timeframes=TIMEFRAMES,
            spec=spec,
            store=store,
            from_ms=from_ms,
            to_ms=to_ms,
            now_ms=NOW_MS,
            sink=sink,
            per_tick=per_tick,
        )
    )
    store.close()
    files = {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != ".writer.lock"
    }
    return files, sink.finals_seen, summary


def _day_files(files: dict[str, bytes]) -> dict[str, bytes]:
    return {
        name: data
        for name, data in files.items()
        if name != SEED_FILE and not name.endswith("fetched.jsonl")
    }


def _coverage(files: dict[str, bytes]) -> list[tuple[int, int]]:
    lines = files["GBPJPY/fetched.jsonl"].splitlines()
    intervals = [msgspec.json.decode(line, type=dict[str, int]) for line in lines]
    return merge_all((line["from_ms"], line["to_ms"]) for line in intervals)


def _assert_bulk_equal(
    bulk: tuple[dict[str, bytes], list[OhlcvEvent], ReplaySummary],
    ticked: tuple[dict[str, bytes], list[OhlcvEvent], ReplaySummary],
) -> None:
    """The bulk replay (a new store) against the tick drive (a store holding the seed)."""
    assert SEED_FILE not in bulk[0]
    assert _day_files(bulk[0]) == _day_files(ticked[0])  # byte for byte
    assert _coverage(bulk[0]) == _coverage(ticked[0])
    assert len(bulk[0]["GBPJPY/fetched.jsonl"].splitlines()) < len(
        ticked[0]["GBPJPY/fetched.jsonl"].splitlines()
    )  # a line per day, not per hour: the bulk path ran
    assert _by_series(bulk[1]) == _by_series(ticked[1])
    fields = (
        *("finals", "revisions", "ticks_applied", "late_ticks", "rejected"),
        *("from_ms", "to_ms", "errors"),
    )
    for name in fields:
        assert getattr(bulk[2], name) == getattr(ticked[2], name), name


def _by_series(events: list[OhlcvEvent]) -> dict[Timeframe, list[OhlcvEvent]]:
    """Finals per timeframe in publishing order (the drives interleave timeframes apart)."""
    out: dict[Timeframe, list[OhlcvEvent]] = {}
    for event in events:
        out.setdefault(event.tf, []).append(event)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("start", "end", "volume"),
    [
        # The first week: Sunday's open, five trading days, Friday's close into the weekend.
        ("2012-12-02T00:00:00", "2012-12-08T00:00:00", VolumeMode.TICKS),
        # Christmas (closed 25 Dec 08:00 to 22:01 in the data) with sizes summed as volume.
        ("2012-12-23T00:00:00", "2012-12-28T00:00:00", VolumeMode.SIZE),
    ],
)
def test_minute_drive_writes_what_the_tick_drive_writes(
    start: str,
    end: str,
    volume: VolumeMode,
    shared_data: Path,
    fx_ny: CalendarProfile,
    tmp_path: Path,
) -> None:
    from_ms = to_ms(dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC))
    to_ms_ = to_ms(dt.datetime.fromisoformat(end).replace(tzinfo=dt.UTC))
    batch = read_ticks(shared_data / "dukascopy", "GBPJPY", "dukascopy", from_ms, to_ms_)
    spec = BarSpec(volume=volume)

    ticked = _replay(batch, fx_ny, tmp_path / "ticks", spec, per_tick=True)
    fast = _replay(batch, fx_ny, tmp_path / "minutes", spec, per_tick=False)
    bulk = _replay(batch, fx_ny, tmp_path / "bulk", spec, per_tick=False, seeded=False)

    files, finals, summary = ticked
    assert summary.finals["1m"] > 3000  # days of real minutes, not an empty run
    assert any(name.endswith("fetched.jsonl") for name in files)
    assert {name.split("/")[1] for name in files if name.count("/") == 2} == {
        tf.value for tf in TIMEFRAMES
    }
    assert fast[0] == files  # every store file, byte for byte, coverage lines included
    assert _by_series(fast[1]) == _by_series(finals)
    assert len(fast[1]) == len(finals)
    fast_summary = fast[2]
    assert (fast_summary.finals, fast_summary.revisions) == (summary.finals, summary.revisions)
    assert (fast_summary.ticks_applied, fast_summary.late_ticks, fast_summary.rejected) == (
        summary.ticks_applied,
        summary.late_ticks,
        summary.rejected,
    )
    assert (fast_summary.from_ms, fast_summary.to_ms, fast_summary.errors) == (
        summary.from_ms,
        summary.to_ms,
        summary.errors,
    )
    _assert_bulk_equal(bulk, ticked)


@pytest.mark.slow
def test_minute_drive_equals_tick_drive_over_a_given_range(
    shared_data: Path, fx_ny: CalendarProfile, tmp_path: Path
) -> None:
    """`--from`/`--to` inside trading days: the cut buckets at both ends are treated alike."""
    from_ms = to_ms(dt.datetime(2012, 12, 4, 13, 7, tzinfo=dt.UTC))
    to_ms_ = to_ms(dt.datetime(2012, 12, 6, 9, 31, tzinfo=dt.UTC))
    batch = read_ticks(shared_data / "dukascopy", "GBPJPY", "dukascopy", from_ms, to_ms_)
    spec = BarSpec()
    ticked = _replay(
        batch, fx_ny, tmp_path / "t", spec, per_tick=True, from_ms=from_ms, to_ms=to_ms_
    )
    fast = _replay(
        batch, fx_ny, tmp_path / "m", spec, per_tick=False, from_ms=from_ms, to_ms=to_ms_
    )
    bulk = _replay(
        batch, fx_ny, tmp_path / "b", spec, per_tick=False, from_ms=from_ms, to_ms=to_ms_,
        seeded=False,
    )  # fmt: skip
    assert ticked[2].finals["1m"] > 1000
    assert fast[0] == ticked[0]
    assert _by_series(fast[1]) == _by_series(ticked[1])
    _assert_bulk_equal(bulk, ticked)


@pytest.mark.slow
def test_paced_replay_plays_ticks_live_and_stores_the_same_bars(
    shared_data: Path, fx_ny: CalendarProfile, tmp_path: Path
) -> None:
    """A speed factor keeps the tick-by-tick drive (previews published, a minute per advance);
    its bars are those of the full-speed drive."""
    from_ms = to_ms(dt.datetime(2012, 12, 4, 9, 0, tzinfo=dt.UTC))
    to_ms_ = to_ms(dt.datetime(2012, 12, 4, 11, 0, tzinfo=dt.UTC))
    batch = read_ticks(shared_data / "dukascopy", "GBPJPY", "dukascopy", from_ms, to_ms_)
    calendar = fx_ny.for_symbol("GBPJPY")
    bars: dict[str, dict[Timeframe, list[tuple[object, ...]]]] = {}
    sinks: dict[str, RecordingSink] = {}
    for name, speed in (("paced", 1e6), ("max", 0.0)):
        store = JsonlStore(tmp_path / name)
        store.open()
        sinks[name] = RecordingSink()
        asyncio.run(
            run_replay(
                batch,
                calendar=calendar,
                timeframes=TIMEFRAMES,
                spec=BarSpec(),
                store=store,
                from_ms=from_ms,
                to_ms=to_ms_,
                speed=speed,
                now_ms=NOW_MS,
                sink=sinks[name],
            )
        )
        bars[name] = {
            tf: [
                (b.open_ms, b.open, b.high, b.low, b.close, b.volume)
                for b in store.bars("GBPJPY", tf)
            ]
            for tf in TIMEFRAMES
        }
        store.close()
    assert len(bars["max"][Timeframe.M1]) > 100
    assert bars["paced"] == bars["max"]
    assert sinks["paced"].closed_previews  # the live path ran
    assert not sinks["max"].closed_previews  # nothing built previews nobody consumes
