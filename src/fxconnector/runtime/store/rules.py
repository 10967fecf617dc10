"""The append rules both stores share, so JSONL and SQLite cannot disagree on an outcome.

Rules (DESIGN §3, §6):
- A storable bar is final: `complete=true`, source history or derived, `event_ts == close_ms`,
  `close_ms == open_ms + tf_ms - 1`, `0 < low <= min(open, close) <= max(open, close) <= high`,
  finite prices, a symbol matching the contract's pattern (it becomes a directory name, so this
  check is also what keeps paths inside the store), a Timeframe member, ints where ints belong.
- Bucket alignment is not checked here: 4h/1d boundaries depend on the trading calendar, which
  the store does not know; the builders and the validator own that rule.
- Outcome per key: nothing stored -> NEW (rev 0, no reason); equal to the latest revision on
  every market field -> DUPLICATE (nothing written); otherwise REVISION (latest rev + 1 with the
  caller's reason). A batch may hold a key twice: the second compares with the first.
- Coverage intervals are `[from_ms, to_ms)`, minute-aligned, kept merged (overlapping or
  adjacent intervals become one) and ascending.
- Bulk work (loading a year, a backfill batch) pauses the cyclic GC: it only makes acyclic structs,
  which the collector would rescan again and again for nothing, doubling the time taken.
"""

from __future__ import annotations

import gc
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final

import numpy as np

from fxconnector.core.builders.vector import BarColumns
from fxconnector.core.errors import ContractViolation
from fxconnector.core.model.bar import (
    FINAL_SOURCES,
    SYMBOL_PATTERN,
    OhlcvEvent,
    Source,
    StoredFinal,
)
from fxconnector.core.time_geom import MINUTE_MS, RANGE_END_MS, RANGE_START_MS, Timeframe
from fxconnector.runtime.store.port import AppendOutcome, AppendResult

#: Reason stored on a revision whose caller gave none: a revision without a why is still
#: recorded, and audits can find these by this word.
UNSPECIFIED_REASON: Final = "unspecified"

_SYMBOL = re.compile(SYMBOL_PATTERN)

_TF_MS: Final = {tf: tf.ms for tf in Timeframe}
_NUMBER: Final = (float, int)  # exact types: bool is an int subclass but not a number here

Interval = tuple[int, int]


#: Batches smaller than this keep the GC running: pausing it would buy nothing measurable.
BULK_MIN: Final = 1000


@contextmanager
def bulk(size: int) -> Iterator[None]:
    """Pause the cyclic GC while `size` (>= BULK_MIN) acyclic structs are made; restore it after."""
    if size < BULK_MIN or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


#: Symbols already matched against the pattern (a store sees a handful, per bar).
_GOOD_SYMBOLS: set[str] = set()
_GOOD_SYMBOLS_MAX: Final = 4096


def _good_symbol(symbol: str) -> bool:
    """`_SYMBOL.fullmatch`, remembering the symbols that match (a bounded set)."""
    if _SYMBOL.fullmatch(symbol) is None:
        return False
    if len(_GOOD_SYMBOLS) < _GOOD_SYMBOLS_MAX:
        _GOOD_SYMBOLS.add(symbol)
    return True


def valid_symbol(symbol: object) -> bool:
    """True when `symbol` is a contract symbol (and therefore a safe directory name)."""
    return isinstance(symbol, str) and _SYMBOL.fullmatch(symbol) is not None


def final_problem(bar: OhlcvEvent) -> str | None:
    """Why `bar` cannot be stored as a final, or None when it can."""
    # This runs for every line on open and every appended bar, so a valid bar takes one
    # short-circuit expression (each term as strict as the step-by-step checks of `_explain`,
    # which alone says what is wrong and stays the authority on a new symbol).
    tf = bar.tf
    tf_ms = _TF_MS.get(tf) if type(tf) is Timeframe else None
    open_ms, close_ms, event_ts = bar.open_ms, bar.close_ms, bar.event_ts
    o, h, low, c, volume = bar.open, bar.high, bar.low, bar.close, bar.volume
    if (
        tf_ms is not None
        and type(bar.symbol) is str
        and (bar.symbol in _GOOD_SYMBOLS or _good_symbol(bar.symbol))
        and bar.complete is True
        and type(bar.source) is Source
        and bar.source in FINAL_SOURCES
        and type(open_ms) is int
        and RANGE_START_MS <= open_ms <= RANGE_END_MS - tf_ms
        and type(close_ms) is int
        and close_ms == open_ms + tf_ms - 1
        and type(event_ts) is int
        and event_ts == close_ms
        and type(o) in _NUMBER
        and type(h) in _NUMBER
        and type(low) in _NUMBER
        and type(c) in _NUMBER
        and 0 < low <= o <= h < math.inf
        and low <= c <= h
        and type(volume) in _NUMBER
        and 0 <= volume < math.inf
        and type(bar.tick_count) is int
        and bar.tick_count >= 0
    ):
        return None
    return _explain(bar)


def _explain(bar: OhlcvEvent) -> str | None:
    """The first broken rule of `bar`, checked one by one; None when there is none."""
    tf = bar.tf
    if not isinstance(tf, Timeframe):
        return f"tf {tf!r} is not a Timeframe"
    if not valid_symbol(bar.symbol):
        return f"symbol {bar.symbol!r} does not match {SYMBOL_PATTERN}"
    if bar.complete is not True:
        return "not final (complete must be true)"
    if not isinstance(bar.source, str) or bar.source not in FINAL_SOURCES:
        return f"source {bar.source!s} is not a final source (history or derived)"
    open_ms, close_ms = bar.open_ms, bar.close_ms
    # The bar's close must stay inside the range too, hence `<= RANGE_END_MS - tf.ms`.
    if type(open_ms) is not int or not RANGE_START_MS <= open_ms <= RANGE_END_MS - tf.ms:
        return f"open_ms {open_ms!r} is not an epoch-ms int in the supported range"
    if type(close_ms) is not int or close_ms != open_ms + tf.ms - 1:
        expected = open_ms + tf.ms - 1
        return f"close_ms must be the int open_ms + {tf.ms} - 1 = {expected}, got {close_ms!r}"
    if type(bar.event_ts) is not int or bar.event_ts != close_ms:
        return f"event_ts must be the int close_ms {close_ms}, got {bar.event_ts!r}"
    # Exact type checks: what we write must decode back on the next open (a float where an
    # int belongs would turn into a corrupt line there), and bool is not a number here.
    for price in (bar.open, bar.high, bar.low, bar.close):
        if type(price) not in _NUMBER:
            return f"price {price!r} is not a number"
    low, high = bar.low, bar.high
    # `not (a <= b)` rather than `a > b`: NaN fails every comparison, so it is caught here too.
    if not (
        0 < low <= min(bar.open, bar.close)
        and max(bar.open, bar.close) <= high
        and math.isfinite(high)
    ):
        return (
            "OHLC order broken: need 0 < low <= min(open, close) <= max(open, close) <= high, "
            f"got o={bar.open} h={high} l={low} c={bar.close}"
        )
    volume = bar.volume
    if type(volume) not in _NUMBER or not 0 <= volume < math.inf:
        return f"volume {volume!r} is not a finite number >= 0"
    if type(bar.tick_count) is not int or bar.tick_count < 0:
        return f"tick_count {bar.tick_count!r} is not an int >= 0"
    return None


def check_finals(bars: Iterable[OhlcvEvent]) -> None:
    """Raise ContractViolation naming the first bar that is not a storable final."""
    for index, bar in enumerate(bars):
        problem = final_problem(bar)
        if problem is not None:
            raise ContractViolation(
                f"bar #{index} ({bar.symbol} {bar.tf} open_ms={bar.open_ms}) cannot be stored: "
                f"{problem}"
            )


def stored_columns(
    symbol: str, tf: Timeframe, source: Source, columns: BarColumns
) -> list[StoredFinal]:
    """The bars of `columns` as rev 0 finals, checked as `check_finals` checks each bar but
    a column at a time (a bulk load of a month is checked in milliseconds, not per bar).

    `columns` must ascend strictly by open_ms; the first bar that breaks a rule is named."""
    if not columns.open_ms.size:
        return []
    with np.errstate(invalid="ignore"):
        good = (
            (columns.open_ms >= RANGE_START_MS)
            & (columns.open_ms <= RANGE_END_MS - tf.ms)
            & (columns.low > 0)
            & (columns.low <= columns.open)
            & (columns.open <= columns.high)
            & (columns.low <= columns.close)
            & (columns.close <= columns.high)
            & np.isfinite(columns.high)
            & (columns.volume >= 0)
            & np.isfinite(columns.volume)
            & (columns.tick_count >= 0)
        )
    good[1:] &= columns.open_ms[1:] > columns.open_ms[:-1]
    last = tf.ms - 1
    bars = [
        StoredFinal(symbol, tf, o_ms, o_ms + last, o, h, lo, c, v, n, True, source, o_ms + last, 0)
        for o_ms, o, h, lo, c, v, n in zip(
            columns.open_ms.tolist(),
            columns.open.tolist(),
            columns.high.tolist(),
            columns.low.tolist(),
            columns.close.tolist(),
            columns.volume.tolist(),
            columns.tick_count.tolist(),
            strict=True,
        )
    ]  # fmt: skip
    bad = np.flatnonzero(~good)
    if bad.size or not valid_symbol(symbol) or source not in FINAL_SOURCES:
        index = int(bad[0]) if bad.size else 0
        bar = bars[index]
        problem = final_problem(bar) or "open_ms not above the previous bar's (columns ascend)"
        raise ContractViolation(
            f"bar #{index} ({symbol} {tf} open_ms={bar.open_ms}) cannot be stored: {problem}"
        )
    return bars


def same_bar(stored: StoredFinal, bar: OhlcvEvent) -> bool:
    """True when `bar` repeats `stored` on every market field (rev and reason do not count)."""
    return (
        stored.open == bar.open
        and stored.high == bar.high
        and stored.low == bar.low
        and stored.close == bar.close
        and stored.volume == bar.volume
        and stored.tick_count == bar.tick_count
        and stored.source == bar.source
        and stored.close_ms == bar.close_ms
        and stored.event_ts == bar.event_ts
    )


def to_stored(bar: OhlcvEvent, rev: int, reason: str) -> StoredFinal:
    """`bar` as the store keeps it, with the store's rev and reason."""
    # Positional, in StoredFinal's field order: a keyword call costs twice as much, per bar.
    return StoredFinal(
        bar.symbol,
        bar.tf,
        bar.open_ms,
        bar.close_ms,
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
        bar.tick_count,
        True,  # complete
        # A plain 'history' string (an unvalidated struct) becomes the enum member.
        bar.source if type(bar.source) is Source else Source(bar.source),
        bar.event_ts,
        rev,
        reason,
    )


Lookup = Callable[[str, Timeframe, int], StoredFinal | None]


def resolve(
    bars: Sequence[OhlcvEvent], lookup: Lookup, reason: str
) -> tuple[list[AppendResult], list[StoredFinal]]:
    """Outcomes in input order and the finals to write, in the order they must be written.

    `lookup` answers the latest stored revision of a key; keys seen earlier in the batch are
    answered from the batch itself. The bars must have passed `check_finals`.
    """
    revision_reason = reason or UNSPECIFIED_REASON
    pending: dict[tuple[str, Timeframe, int], StoredFinal] = {}
    results: list[AppendResult] = []
    writes: list[StoredFinal] = []
    for bar in bars:
        key = (bar.symbol, bar.tf, bar.open_ms)
        previous = pending.get(key)
        if previous is None:
            previous = lookup(bar.symbol, bar.tf, bar.open_ms)
        if previous is None:
            stored = to_stored(bar, 0, "")
            outcome = AppendOutcome.NEW
        elif same_bar(previous, bar):
            results.append(AppendResult(AppendOutcome.DUPLICATE, previous))
            continue
        else:
            stored = to_stored(bar, previous.rev + 1, revision_reason)
            outcome = AppendOutcome.REVISION
        pending[key] = stored
        writes.append(stored)
        results.append(AppendResult(outcome, stored))
    return results, writes


def check_interval(symbol: str, from_ms: int, to_ms: int) -> None:
    """Raise ContractViolation unless `[from_ms, to_ms)` is a minute-aligned coverage interval."""
    if not valid_symbol(symbol):
        raise ContractViolation(f"symbol {symbol!r} does not match {SYMBOL_PATTERN}")
    if not RANGE_START_MS <= from_ms <= to_ms <= RANGE_END_MS:
        raise ContractViolation(
            f"fetched interval [{from_ms}, {to_ms}) is reversed or outside the supported range"
        )
    if from_ms % MINUTE_MS or to_ms % MINUTE_MS:
        raise ContractViolation(f"fetched interval [{from_ms}, {to_ms}) is not minute-aligned")


def merge_all(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, merged intervals (overlapping or adjacent ones joined, empty ones dropped)."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def covers(intervals: Sequence[Interval], from_ms: int, to_ms: int) -> bool:
    """True when one merged interval already holds all of `[from_ms, to_ms)`."""
    return any(start <= from_ms and to_ms <= end for start, end in intervals)


def clip(intervals: Iterable[Interval], from_ms: int, to_ms: int) -> list[Interval]:
    """The parts of merged `intervals` inside `[from_ms, to_ms)`, ascending."""
    return [
        (max(start, from_ms), min(end, to_ms))
        for start, end in intervals
        if start < to_ms and end > from_ms
    ]
