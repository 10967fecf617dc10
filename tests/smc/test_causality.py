"""The proofs that need no live part (issue 13, point 4), over real series from ../shared/data.

- prefix replay: for every prefix length n, a fresh run over bars[0:n] prints exactly the lines
  of the full run whose confirm_ts <= close of bar n-1, byte for byte;
- perturbation: changing bars after bar t changes no hint confirmed by bar t;
- every hint is valid, `confirm_ts >= anchor_ts`, both are bars of the series, ids are unique.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.smc import SmcHint
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.validation.validator import hint_problems
from fxconnector.smc import SmcConfig, SmcEngine, encode_hint
from tests.smc import bars as real

Series = Callable[[Path, CalendarProfile], Sequence[OhlcvEvent]]

#: Several real series, each a few hundred to a few thousand final bars.
SERIES: dict[str, Series] = {
    "fxcm-gbpusd-2012-1m": lambda d, _: real.fxcm_year(d, "gbpusd", 2012)[100_000:103_000],
    "fxcm-usdjpy-2013-1m": lambda d, _: real.fxcm_year(d, "usdjpy", 2013)[:3_000],
    "fxcm-gbpusd-2012-1h": lambda d, c: real.fxcm_derived(d, "gbpusd", 2012, Timeframe.H1, c)[
        :3_000
    ],
    "fxcm-usdjpy-2013-4h": lambda d, c: real.fxcm_derived(d, "usdjpy", 2013, Timeframe.H4, c),
    "dukascopy-eurusd-1m": lambda d, _: real.dukascopy_minutes(d),
    "dukascopy-eurusd-1h": lambda d, _: real.dukascopy_hours(d),
}
#: All prefixes of this many bars of each series (a fresh engine each: quadratic work).
ALL_PREFIXES = 400


def lines_by_bar(bars: Sequence[OhlcvEvent], config: SmcConfig | None = None) -> list[list[bytes]]:
    """The canonical lines each bar's update returned."""
    engine = SmcEngine(bars[0].symbol, bars[0].tf, config)
    return [[encode_hint(h) for h in engine.update(bar)] for bar in bars]


_FULL: dict[tuple[int, int, int], list[bytes]] = {}


def full_lines(bars: Sequence[OhlcvEvent]) -> list[bytes]:
    """The full run's lines of a series (computed once per series)."""
    key = (bars[0].open_ms, bars[-1].open_ms, len(bars))
    if key not in _FULL:
        _FULL[key] = [line for bar_lines in lines_by_bar(bars) for line in bar_lines]
    return _FULL[key]


class _Confirm(msgspec.Struct):
    confirm_ts: int


def decoded_confirm(line: bytes) -> int:
    return msgspec.json.decode(line, type=_Confirm).confirm_ts


def run(bars: Sequence[OhlcvEvent]) -> list[SmcHint]:
    engine = SmcEngine(bars[0].symbol, bars[0].tf)
    return [h for bar in bars for h in engine.update(bar)]


@pytest.fixture(params=sorted(SERIES))
def series(
    request: pytest.FixtureRequest, shared_data: Path, fx_ny: CalendarProfile
) -> Sequence[OhlcvEvent]:
    bars = SERIES[request.param](shared_data, fx_ny)
    assert len(bars) > 300, request.param
    return bars


def test_every_prefix_gives_the_full_runs_lines_byte_for_byte(
    series: Sequence[OhlcvEvent],
) -> None:
    bars = series[:ALL_PREFIXES]
    full = lines_by_bar(bars)
    expected: list[bytes] = []
    for n in range(1, len(bars) + 1):
        expected.extend(full[n - 1])
        engine = SmcEngine(bars[0].symbol, bars[0].tf)
        got = [encode_hint(h) for bar in bars[:n] for h in engine.update(bar)]
        assert got == expected, n


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_long_prefixes_give_the_full_runs_lines(
    series: Sequence[OhlcvEvent], data: st.DataObject
) -> None:
    n = data.draw(st.integers(min_value=1, max_value=len(series)))
    cut = series[n - 1].close_ms
    expected = [line for line in full_lines(series) if decoded_confirm(line) <= cut]
    assert [line for bar_lines in lines_by_bar(series[:n]) for line in bar_lines] == expected


def perturbed(bar: OhlcvEvent, factor: float, swap: bool) -> OhlcvEvent:
    """`bar` scaled by `factor`, and turned upside down around its mid when `swap`."""
    o, h, l, c = (p * factor for p in (bar.open, bar.high, bar.low, bar.close))  # noqa: E741
    if swap:
        mid = (h + l) / 2
        o, h, l, c = 2 * mid - o, 2 * mid - l, 2 * mid - h, 2 * mid - c  # noqa: E741
    return msgspec.structs.replace(bar, open=o, high=h, low=l, close=c)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_changing_bars_after_t_changes_no_hint_confirmed_by_t(
    series: Sequence[OhlcvEvent], data: st.DataObject
) -> None:
    t = data.draw(st.integers(min_value=0, max_value=len(series) - 2))
    noise = random.Random(data.draw(st.integers(min_value=0, max_value=2**32)))
    changed = list(series[: t + 1])
    for bar in series[t + 1 :]:
        changed.append(perturbed(bar, noise.uniform(0.97, 1.03), noise.random() < 0.5))
    cut = series[t].close_ms
    before = [line for line in full_lines(series) if decoded_confirm(line) <= cut]
    after = [encode_hint(h) for h in run(changed) if h.confirm_ts <= cut]
    assert after == before


def test_every_hint_is_valid_and_confirmed_at_or_after_its_anchor(
    series: Sequence[OhlcvEvent],
) -> None:
    hints = run(series)
    assert hints
    opens = {b.open_ms for b in series}
    closes = {b.close_ms for b in series}
    for hint in hints:
        assert hint_problems(hint) == [], hint
        assert hint.confirm_ts >= hint.anchor_ts
        assert hint.anchor_ts in opens
        assert hint.confirm_ts in closes
        assert hint.rev == 0
        assert not hint.retracted
    assert len({h.id for h in hints}) == len(hints)
    refs = {h.id: h for h in hints}
    for hint in hints:
        if hint.ref is not None:
            assert refs[hint.ref].confirm_ts <= hint.confirm_ts  # refers only to the past
