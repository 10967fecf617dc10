"""The contract check of a history answer: which bars are good, which candles are refused.

Rules (DESIGN §5): a bad candle (refused by the adapter, or here: off its bucket or outside
the requested range, in a minute the calendar calls closed, not complete, ...) rejects itself
only; the rest of the answer is good. Pure: the caller counts and reports the refusals.
"""

from __future__ import annotations

from dataclasses import dataclass

from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.core.validation.validator import bar_problems, clean_final
from fxconnector.runtime.ingest.broker.port import HistoryAnswer


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused candle: its minute (None: unreadable time), the reason and the detail."""

    open_ms: int | None
    reason: str
    detail: str


def check_answer(
    calendar: TradingCalendar, symbol: str, answer: HistoryAnswer, from_ms: int, to_ms: int
) -> tuple[list[OhlcvEvent], set[int | None], list[Refusal]]:
    """The answer's good bars, the minutes of refused candles (None: unreadable) and the
    refusals in the answer's order (the adapter's first)."""
    refused: set[int | None] = set()
    refusals: list[Refusal] = []
    for candle in answer.rejected:
        refused.add(candle.open_ms)
        refusals.append(Refusal(candle.open_ms, candle.reason, candle.detail))
    accepted = []
    is_open = calendar.is_open
    for bar in answer.bars:
        # Fast path: the common good bar passes every check below at once (a test holds
        # `clean_final` equal to bar_problems); anything else is explained check by check.
        if (
            from_ms <= bar.open_ms < to_ms
            and clean_final(bar, symbol, Timeframe.M1)
            and is_open(bar.open_ms)
        ):
            accepted.append(bar)
            continue
        problems = [
            p.message
            for p in bar_problems(bar, calendar, symbols={symbol}, timeframes={Timeframe.M1})
        ]
        if not bar.complete:
            problems.append("history bar is not complete")
        if not from_ms <= bar.open_ms < to_ms:
            problems.append(f"outside the requested range [{from_ms}, {to_ms})")
        elif not calendar.is_open(bar.open_ms):
            problems.append("in a minute the calendar calls closed")
        if problems:
            refused.add(bar.open_ms - bar.open_ms % MINUTE_MS)
            refusals.append(Refusal(bar.open_ms, "bar_contract", "; ".join(problems)))
            continue
        accepted.append(bar)
    return accepted, refused, refusals
