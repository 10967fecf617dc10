"""The bulk replay (full speed into a symbol the store has never held), on real Dukascopy
ticks: it acknowledges and reports progress a day at a time, publishes only what is durable,
and leaves a symbol the store already holds to the pipeline."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import DAY_MS, MINUTE_MS, TIMEFRAMES, Timeframe, to_ms
from fxconnector.runtime.ingest.broker.replay.readers import read_ticks
from fxconnector.runtime.ingest.replay import ReplaySummary, run_replay
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.runtime.ingest.test_replay_drives import SEED

NOW_MS = to_ms(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
FROM_MS = to_ms(dt.datetime(2012, 12, 3, tzinfo=dt.UTC))
TO_MS = to_ms(dt.datetime(2012, 12, 6, tzinfo=dt.UTC))


class DurableSink:
    """Records every final published, with whether the store already has it on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.finals_seen: list[OhlcvEvent] = []
        self.on_disk: list[bool] = []

    def finals(self, events: Sequence[OhlcvEvent]) -> None:
        for event in events:
            self.finals_seen.append(event)
            day = dt.datetime.fromtimestamp(event.open_ms // 1000, dt.UTC).date()
            path = self.root / event.symbol / event.tf.value / f"{day}.jsonl"
            self.on_disk.append(path.exists() and f'"open_ms":{event.open_ms},' in path.read_text())

    def previews(self, events: Sequence[OhlcvEvent]) -> None:
        raise AssertionError("a full-speed replay publishes no previews")


def _replay(
    root: Path, shared_data: Path, fx_ny: CalendarProfile, seed: OhlcvEvent | None = None
) -> tuple[ReplaySummary, list[int], list[tuple[int, int]], DurableSink]:
    batch = read_ticks(shared_data / "dukascopy", "GBPJPY", "dukascopy", FROM_MS, TO_MS)
    store = JsonlStore(root)
    store.open()
    if seed is not None:
        store.append([seed])
    acks: list[int] = []
    progress: list[tuple[int, int]] = []
    sink = DurableSink(root)
    try:
        summary = asyncio.run(
            run_replay(
                batch,
                calendar=fx_ny.for_symbol("GBPJPY"),
                timeframes=TIMEFRAMES,
                spec=BarSpec(),
                store=store,
                from_ms=FROM_MS,
                to_ms=TO_MS,
                now_ms=NOW_MS,
                sink=sink,
                ack=acks.append,
                ack_interval_s=0.0,  # acknowledge whenever a step allows
                progress=lambda done, total: progress.append((done, total)),
            )
        )
    finally:
        store.close()
    return summary, acks, progress, sink


def test_a_new_symbol_is_acknowledged_a_day_at_a_time_and_published_once_durable(
    shared_data: Path, fx_ny: CalendarProfile, tmp_path: Path
) -> None:
    summary, acks, progress, sink = _replay(tmp_path / "s", shared_data, fx_ny)
    assert summary.finals["1m"] > 3000
    # One acknowledgement per UTC day, through each day's end, then the run's end.
    assert acks == [FROM_MS + DAY_MS, FROM_MS + 2 * DAY_MS, TO_MS, TO_MS]
    dones = [done for done, _ in progress]
    assert dones == sorted(dones)
    assert progress[-1] == (summary.ticks_total,) * 2
    assert 0 < dones[0] < dones[1] < summary.ticks_total
    assert all(sink.on_disk)
    assert len(sink.on_disk) == sum(summary.finals.values())
    tfs = {event.tf for event in sink.finals_seen}
    assert tfs == set(TIMEFRAMES)
    coverage = (tmp_path / "s" / "GBPJPY" / "fetched.jsonl").read_text().splitlines()
    assert len(coverage) == 3  # a line per UTC day
    # The 1d bucket that opened at 17:00 New York on 2 Dec lies partly before the range, and
    # the one of 5 Dec ends after it: neither is derived; those between are.
    days = [e.open_ms for e in sink.finals_seen if e.tf is Timeframe.D1]
    assert days == [to_ms(dt.datetime(2012, 12, d, 22, tzinfo=dt.UTC)) for d in (3, 4)]
    assert all(e.open_ms % MINUTE_MS == 0 for e in sink.finals_seen)


def test_a_symbol_the_store_holds_takes_the_pipeline(
    shared_data: Path, fx_ny: CalendarProfile, tmp_path: Path
) -> None:
    fresh = _replay(tmp_path / "fresh", shared_data, fx_ny)
    held = _replay(tmp_path / "held", shared_data, fx_ny, seed=SEED)
    lines = (tmp_path / "held" / "GBPJPY" / "fetched.jsonl").read_text().splitlines()
    assert len(lines) > 40  # the minute drive: a line per hour of tick time
    assert held[0].finals == fresh[0].finals
    assert sorted(held[3].finals_seen, key=lambda e: (e.tf.ms, e.open_ms)) == sorted(
        fresh[3].finals_seen, key=lambda e: (e.tf.ms, e.open_ms)
    )
