"""Importing recorded 1m candles: the file plays the broker's 1m history for one range fetch.

Rules: the candles (`broker/replay/candles.py`) are answered as the history of
`[first candle, last candle + 1 minute)` (or the `--from`/`--to` range) through the same
`Pipeline.fetch_range` a backfill uses: the same contract and calendar checks (a candle in a
minute the calendar calls closed is refused and counted, never stored), the same quiet rule
(an open minute inside the file's span without a candle is quiet: the file is the broker's whole
record of it; none after the last candle is claimed), the same store path (a final again is a
no-op, a different one a revision) and the same derivation of the higher timeframes.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fxconnector.core.buckets import bucket_open
from fxconnector.core.builders.spec import BarSpec
from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.errors import ConfigError
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.core.validation.ticks import TickRails
from fxconnector.runtime.ingest.broker.port import HistoryAnswer
from fxconnector.runtime.ingest.polling.pipeline import Pipeline
from fxconnector.runtime.ingest.polling.range_fetch import RangeResult
from fxconnector.runtime.publish.sink import CountingSink
from fxconnector.runtime.store.port import FinalStore


class CandleHistory:
    """A symbol's recorded 1m candles answered as broker history."""

    def __init__(self, symbol: str, bars: Sequence[OhlcvEvent]) -> None:
        self.symbol = symbol
        self._bars = list(bars)
        self._opens = [bar.open_ms for bar in self._bars]
        self.until_ms = self._opens[-1] + MINUTE_MS if self._opens else 0

    async def history_1m(self, symbol: str, from_ms: int, to_ms: int) -> HistoryAnswer:
        if symbol != self.symbol:
            raise ConfigError(f"this import holds {self.symbol}, not {symbol}")
        lo = bisect.bisect_left(self._opens, from_ms)
        hi = bisect.bisect_left(self._opens, to_ms)
        return HistoryAnswer(self._bars[lo:hi], passed_until_ms=min(to_ms, self.until_ms))


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What one import did (the range fetch's result plus the finals counted by timeframe)."""

    range: RangeResult
    finals: dict[str, int]
    revisions: dict[str, int]
    refused: dict[str, int]


async def import_candles(
    symbol: str,
    bars: Sequence[OhlcvEvent],
    *,
    calendar: TradingCalendar,
    timeframes: tuple[Timeframe, ...],
    spec: BarSpec,
    store: FinalStore,
    now_ms: int,
    from_ms: int | None = None,
    to_ms: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Store `bars` (final 1m, ascending) as `symbol`'s history over their range and derive."""
    if not bars:
        raise ConfigError(f"{symbol}: no candles to import in the range")
    history = CandleHistory(symbol, bars)
    start = from_ms if from_ms is not None else bars[0].open_ms
    end = to_ms if to_ms is not None else history.until_ms
    pipeline = Pipeline(
        history=history.history_1m,
        store=store,
        calendars={symbol: calendar},
        timeframes=timeframes,
        spec=spec,
        rails=TickRails(symbols=frozenset({symbol})),
        sink=CountingSink(),
        start_ms={symbol: start},
        safety_delay_ms=0,
        flush_each_advance=False,
    )
    # A week at a time, cut at trading-day boundaries (no bucket up to 1d spans two pieces):
    # each piece is stored and derived before the next, so progress counts the derivation too.
    pieces = _pieces(start, end, calendar)
    result = RangeResult(symbol=symbol, from_ms=start, to_ms=start)
    for index, (a, b) in enumerate(pieces):
        piece = await pipeline.fetch_range(
            symbol, a, b, caller="import", now_ms=max(now_ms, end), progress=None
        )
        _add(result, piece)
        if progress is not None:
            progress(index + 1, len(pieces))
    pipeline.flush()
    stats = pipeline.stats
    return ImportResult(
        result, dict(stats.finals), dict(stats.revisions), dict(stats.candles_refused)
    )


#: Trading days per import piece.
PIECE_DAYS = 7


def _pieces(start: int, end: int, calendar: TradingCalendar) -> list[tuple[int, int]]:
    cuts = [start]
    day = bucket_open(start, Timeframe.D1, calendar)
    while True:
        # The boundary of the day a week on (not +7x24 h: the boundary moves with DST).
        day = bucket_open(
            day + PIECE_DAYS * Timeframe.D1.ms + Timeframe.D1.ms // 2, Timeframe.D1, calendar
        )
        if day >= end:
            break
        cuts.append(day)
    cuts.append(end)
    return list(itertools.pairwise(cuts))


def _add(total: RangeResult, piece: RangeResult) -> None:
    total.to_ms = piece.to_ms
    total.bars_fetched += piece.bars_fetched
    total.new_bars += piece.new_bars
    total.revisions += piece.revisions
    total.derived += piece.derived
    total.refused += piece.refused
    total.failed_chunks.extend(piece.failed_chunks)
    total.pending.extend(piece.pending)
