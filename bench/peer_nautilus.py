"""The live path's peer row: NautilusTrader's `TimeBarAggregator` on the same real ticks.

NautilusTrader (the `nautilus_trader` wheel, in the `bench` extra) is optional: where it does not
install or import, `aggregator_factory()` returns None with the reason and the row is skipped.

What the peer does: one `TimeBarAggregator` per timeframe (bid side, no bar for a bucket without
ticks, as ours), each fed every `QuoteTick`, in one of two modes:
- `timer` (its live semantics): a `TestClock` is advanced to each tick's time and the timers
  that fall due close the bars first (as its backtest engine drives them), then the tick goes in;
- `batch` (its historical-request path): bars close on tick time inside the aggregator, with no
  clock; the leanest way it has to aggregate.
The ticks are built before the timed part, like our `Tick` structs. 4h and 1d get an origin
offset so their buckets open at the trading day's start, as ours do on the `fx_ny` calendar
(17:00 New York = 22:00 UTC in December, no DST change inside the month).

What is compared (`compare`): the OHLC of every bar both sides closed for the same
(timeframe, open). In `batch` mode a tick stamped exactly on a boundary goes into the bar that
ends there (left-open intervals), ours into the bar that opens there (DESIGN §3), so there
buckets with a tick on either boundary are left out and counted; `timer` mode agrees with ours
on them. Volumes are not compared (Nautilus sums sizes; our live path counts ticks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fxconnector.core.time_geom import Timeframe

NS_PER_MS: Final = 1_000_000
#: Our timeframes in Nautilus's bar-type spelling.
_SPECS: Final = {
    Timeframe.M1: "1-MINUTE",
    Timeframe.M3: "3-MINUTE",
    Timeframe.M5: "5-MINUTE",
    Timeframe.M15: "15-MINUTE",
    Timeframe.M30: "30-MINUTE",
    Timeframe.H1: "1-HOUR",
    Timeframe.H4: "4-HOUR",
    Timeframe.D1: "1-DAY",
}

#: (timeframe, open_ms) -> (open, high, low, close)
Bars = dict[tuple[Timeframe, int], tuple[float, float, float, float]]


@dataclass(frozen=True, slots=True)
class Peer:
    """Ticks in Nautilus's form and a way to run its aggregators over them."""

    ticks: list[Any]
    run: Callable[[Sequence[Timeframe], Callable[[Timeframe, Any], None] | None, bool], None]
    version: str


def peer(
    pair: str,
    ts_ms: npt.NDArray[np.int64],
    bid: npt.NDArray[np.float64],
    ask: npt.NDArray[np.float64],
) -> Peer | str:
    """The peer over these ticks, or why it cannot run here."""
    try:
        import nautilus_trader
        import pandas as pd
        from nautilus_trader.common.component import TestClock
        from nautilus_trader.data.aggregation import TimeBarAggregator
        from nautilus_trader.model.data import BarType, QuoteTick
        from nautilus_trader.model.objects import Price, Quantity
        from nautilus_trader.test_kit.providers import TestInstrumentProvider
    except ImportError as exc:  # not installed (no wheel for this platform or Python)
        return f"nautilus_trader not importable ({exc}); `pip install '.[bench]'` installs it"
    instrument = TestInstrumentProvider.default_fx_ccy(pair)
    precision = instrument.price_precision
    one = Quantity(1, 0)
    ticks = [
        QuoteTick(instrument.id, Price(b, precision), Price(a, precision), one, one, t, t)
        for t, b, a in zip((ts_ms * NS_PER_MS).tolist(), bid.tolist(), ask.tolist(), strict=True)
    ]
    first_ns = ticks[0].ts_init
    offsets = {Timeframe.H4: pd.Timedelta(hours=2), Timeframe.D1: pd.Timedelta(hours=22)}

    def run(
        timeframes: Sequence[Timeframe],
        on_bar: Callable[[Timeframe, Any], None] | None,
        timers: bool,
    ) -> None:
        clock = TestClock()
        clock.set_time(first_ns)
        handlers = []
        for tf in timeframes:
            bar_type = BarType.from_str(f"{instrument.id}-{_SPECS[tf]}-BID-INTERNAL")

            def handler(bar: Any, tf: Timeframe = tf) -> None:
                if on_bar is not None:
                    on_bar(tf, bar)

            aggregator = TimeBarAggregator(
                instrument,
                bar_type,
                handler,
                clock,
                timestamp_on_close=False,
                build_with_no_updates=False,
                time_bars_origin_offset=offsets.get(tf),
            )
            if not timers:
                aggregator.start_batch_update(handler, first_ns)
            handlers.append(aggregator.handle_quote_tick)
        if timers:
            advance = clock.advance_time
            for tick in ticks:
                for due in advance(tick.ts_init):
                    due.handle()
                for handle in handlers:
                    handle(tick)
        elif len(handlers) == 1:
            (handle,) = handlers
            for tick in ticks:
                handle(tick)
        else:
            for tick in ticks:
                for handle in handlers:
                    handle(tick)

    return Peer(ticks, run, nautilus_trader.__version__)


def peer_bars(subject: Peer, timeframes: Sequence[Timeframe], timers: bool) -> Bars:
    """Every bar the peer closes over the ticks, keyed like ours."""
    out: Bars = {}

    def on_bar(tf: Timeframe, bar: Any) -> None:
        out[(tf, bar.ts_event // NS_PER_MS)] = (
            float(bar.open),
            float(bar.high),
            float(bar.low),
            float(bar.close),
        )

    subject.run(timeframes, on_bar, timers)
    return out


def compare(
    ours: Bars, theirs: Bars, ts_ms: npt.NDArray[np.int64], timers: bool
) -> tuple[int, int, int]:
    """(bars equal, bars different, buckets left out for a tick on a boundary: batch mode)."""
    stamps = set() if timers else set(ts_ms.tolist())
    equal = different = skipped = 0
    for (tf, open_ms), ohlc in theirs.items():
        mine = ours.get((tf, open_ms))
        if mine is None:
            continue  # a bucket ours never built (closed market) or has not closed yet
        if open_ms in stamps or open_ms + tf.ms in stamps:
            skipped += 1
        elif np.allclose(mine, ohlc, rtol=0, atol=1e-9):
            equal += 1
        else:
            different += 1
    return equal, different, skipped
