"""Derived finals from a real year of FXCM 1m bars, with an outage that must stay missing."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from fxconnector.core.builders.vector import BarColumns, compose
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.coverage import classify, count
from fxconnector.core.model.bar import Source
from fxconnector.core.time_geom import DAY_MS, Timeframe
from fxconnector.core.validation.validator import bar_problems
from fxconnector.runtime.ingest.polling.derived_builder import DerivedBuilder
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.fxcm_data import fxcm_finals

YEAR_FROM = 1_325_376_000_000  # 2012-01-01T00:00:00Z
YEAR_TO = 1_356_998_400_000  # 2013-01-01T00:00:00Z
OUTAGE = (1_339_372_800_000, 1_339_459_200_000)  # Mon 2012-06-11, a whole UTC day
TFS = (Timeframe.M1, Timeframe.H1, Timeframe.H4, Timeframe.D1)


@pytest.mark.slow
def test_fxcm_year_derives_consistently_and_invents_nothing(
    shared_data: Path, tmp_path: Path, fx_ny: CalendarProfile
) -> None:
    calendar = fx_ny.default
    finals = fxcm_finals(shared_data / "fxcm" / "fxcm-gbpusd-m1-bid-2012.csv.zip", "GBPUSD")
    assert len(finals) == 368_621
    kept = [b for b in finals if not OUTAGE[0] <= b.open_ms < OUTAGE[1]]
    store = JsonlStore(tmp_path / "ssot", fsync_interval_ms=1_000)
    store.open()
    store.append(kept)
    # The broker's history was fetched for the whole year except the outage day.
    store.mark_fetched("GBPUSD", YEAR_FROM, OUTAGE[0])
    store.mark_fetched("GBPUSD", OUTAGE[1], YEAR_TO)
    store.flush()

    builder = DerivedBuilder(store, {"GBPUSD": calendar}, TFS)
    builder.touch("GBPUSD", YEAR_FROM, YEAR_TO)
    published = builder.run(YEAR_TO)
    assert published, "nothing derived"

    hours = list(store.bars("GBPUSD", Timeframe.H1))
    fours = list(store.bars("GBPUSD", Timeframe.H4))
    days = list(store.bars("GBPUSD", Timeframe.D1))
    for bar in [*hours, *fours, *days]:
        assert bar.complete
        assert bar.source is Source.DERIVED
        assert bar.event_ts == bar.close_ms
        assert bar_problems(bar.event(), calendar) == []
        # Nothing is derived over the outage: every bucket touching it waits.
        assert not (bar.open_ms < OUTAGE[1] and bar.close_ms >= OUTAGE[0])

    # 1m -> 4h equals 1m -> 1h -> 4h on every derived 4h bucket.
    via_hours = compose(BarColumns.from_events([h.event() for h in hours]), Timeframe.H4, calendar)
    by_open = {int(o): i for i, o in enumerate(via_hours.open_ms)}
    for bar in fours:
        i = by_open[bar.open_ms]
        assert (bar.open, bar.high, bar.low, bar.close) == (
            via_hours.open[i],
            via_hours.high[i],
            via_hours.low[i],
            via_hours.close[i],
        )
    assert len(fours) == len(by_open) - sum(
        1 for o in by_open if o < OUTAGE[1] and o + Timeframe.H4.ms > OUTAGE[0]
    )

    # 1d from 1m equals the plain aggregate of that day's 1m bars.
    some_day = days[100]
    minutes = [b for b in finals if some_day.open_ms <= b.open_ms <= some_day.close_ms]
    assert some_day.open == minutes[0].open
    assert some_day.close == minutes[-1].close
    assert some_day.high == max(b.high for b in minutes)
    assert some_day.low == min(b.low for b in minutes)

    # Coverage: the outage's open minutes are missing; FXCM's empty minutes are quiet.
    opens = np.fromiter((b.open_ms for b in kept), np.int64, len(kept))
    fetched = store.fetched_intervals("GBPUSD", YEAR_FROM, YEAR_TO)
    year = count(classify(YEAR_FROM, YEAR_TO, calendar, opens, fetched))
    assert year.final == len(kept)
    assert year.missing == calendar.trading_minutes(*OUTAGE) == 1440
    assert year.quiet == calendar.trading_minutes(YEAR_FROM, YEAR_TO) - len(kept) - 1440
    assert year.quiet > 0
    print(f"\nFXCM GBPUSD 2012: {year}, derived 1h={len(hours)} 4h={len(fours)} 1d={len(days)}")

    # Repairing the outage fills it and re-derives what it touched; the rest is unchanged.
    store.append([b for b in finals if OUTAGE[0] <= b.open_ms < OUTAGE[1]])
    store.mark_fetched("GBPUSD", *OUTAGE)
    builder.touch("GBPUSD", *OUTAGE)
    repaired = builder.run(YEAR_TO)
    assert {(e.tf, e.rev) for e in repaired} == {
        (Timeframe.H1, 0),
        (Timeframe.H4, 0),
        (Timeframe.D1, 0),
    }
    assert len([e for e in repaired if e.tf is Timeframe.H1]) == 24
    assert msgspec.structs.asdict(store.bars("GBPUSD", Timeframe.D1).__next__())["rev"] == 0
    store.close()
    assert OUTAGE[1] - OUTAGE[0] == DAY_MS
