"""The pipeline's tick fast path against check_tick, with sizes and absurd prices (issue 11 p9).

A tick with a price of 1e308 or a size of -5 or 1e38 is refused and counted under its reason,
exactly as check_tick says, whatever path (fast or slow) it takes.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.tick import Tick
from fxconnector.core.validation.ticks import TickRails, check_tick
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.conftest import calendar_profile
from tests.runtime.ingest.polling.test_pipeline import TFS, RecordingSink

T0 = 1_549_238_400_000 + 3 * 86_400_000  # 2019-02-07T00:00:00Z, Thursday
prices = st.one_of(
    st.floats(min_value=0.5, max_value=2.0),
    st.sampled_from([0.0, -1.0, math.nan, math.inf, 1e308, 1e-300, 2e7, 1e7]),
)
sizes = st.one_of(
    st.just(None),
    st.floats(min_value=0, max_value=1e6),
    st.sampled_from([-5.0, 1e38, 1e12, math.nan, math.inf]),
)


async def _nothing(symbol: str, from_ms: int, to_ms: int) -> list[OhlcvEvent]:
    return []


@given(
    rows=st.lists(
        st.tuples(prices, prices, sizes, sizes, st.integers(0, 600_000)), min_size=1, max_size=40
    ),
    max_price=st.sampled_from([1e7, 2.0]),
)
def test_fast_path_agrees_with_check_tick_on_sizes_and_bands(
    rows: list[tuple[float, float, float | None, float | None, int]], max_price: float
) -> None:
    calendar = calendar_profile("fx_ny").default
    rails = TickRails(frozenset({"EURUSD"}), max_spread_inversion=0.0001, max_price=max_price)
    with tempfile.TemporaryDirectory() as tmp:
        store = JsonlStore(Path(tmp))
        store.open()
        pipeline = Pipeline(
            history=_nothing,
            store=store,
            calendars={"EURUSD": calendar},
            timeframes=TFS,
            spec=BarSpec(),
            rails=rails,
            sink=RecordingSink(),
            start_ms={"EURUSD": T0},
        )
        ts = T0 + 10 * 3_600_000
        for bid, ask, bid_volume, ask_volume, step in rows:
            ts += step
            expected = check_tick(
                rails, "EURUSD", bid, ask, ts, ts, calendar.is_open(ts), bid_volume, ask_volume
            )
            before = dict(pipeline.stats.rejected)
            tick = Tick(
                "EURUSD",
                bid,
                ask,
                ts,
                msgspec.UNSET if bid_volume is None else bid_volume,
                msgspec.UNSET if ask_volume is None else ask_volume,
            )
            applied = pipeline.on_tick(tick, ts)
            after = dict(pipeline.stats.rejected)
            if expected is None:
                assert applied
                assert after == before
            else:
                assert not applied
                assert after[expected.value] == before.get(expected.value, 0) + 1
        store.close()
