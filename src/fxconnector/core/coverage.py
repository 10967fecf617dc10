"""The coverage ledger's arithmetic (DESIGN §4): every minute is closed, final, quiet or missing.

Rules: `closed` when the calendar says so; else `final` when a final 1m bar exists; else `quiet`
when a recorded fetched range covers it; else `missing` (an outage, a gap to repair, or a minute
the broker has not provably passed yet). What may be recorded as fetched is decided by one rule,
`prove_quiet`: the broker's answer must hold a later bar (or its own completeness signal), so
the trailing empty minutes of an answer are never quiet. Computed over whole ranges with numpy,
never minute by minute.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.time_geom import MINUTE_MS, I64Array


class MinuteState(IntEnum):
    CLOSED = 0
    FINAL = 1
    QUIET = 2
    MISSING = 3


@dataclass(frozen=True, slots=True)
class CoverageCounts:
    closed: int
    final: int
    quiet: int
    missing: int

    @property
    def complete(self) -> bool:
        """True when nothing is missing."""
        return self.missing == 0


def classify(
    from_ms: int,
    to_ms: int,
    calendar: TradingCalendar,
    final_opens: I64Array,
    fetched: Sequence[tuple[int, int]],
) -> npt.NDArray[np.int8]:
    """State of each minute in `[from_ms, to_ms)` (both minute-aligned), as MinuteState values.

    `final_opens` are open_ms of final 1m bars (any order); `fetched` are `[start, end)` ranges
    whose history was fetched.
    """
    if from_ms % MINUTE_MS or to_ms % MINUTE_MS:
        raise ValueError(f"coverage range [{from_ms}, {to_ms}) is not minute-aligned")
    minutes = np.arange(from_ms, max(from_ms, to_ms), MINUTE_MS, dtype=np.int64)
    states = np.full(minutes.size, MinuteState.MISSING, dtype=np.int8)
    if fetched:
        starts = np.asarray([a for a, _ in fetched], dtype=np.int64)
        ends = np.asarray([b for _, b in fetched], dtype=np.int64)
        order = np.argsort(starts)
        starts, ends = starts[order], np.maximum.accumulate(ends[order])
        i = np.searchsorted(starts, minutes, side="right") - 1
        covered = (i >= 0) & (minutes < ends[np.maximum(i, 0)])
        states[covered] = MinuteState.QUIET
    if final_opens.size:
        finals = np.sort(final_opens)
        j = np.searchsorted(finals, minutes)
        hit = finals[np.minimum(j, finals.size - 1)] == minutes
        states[hit] = MinuteState.FINAL
    states[~calendar.is_open_array(minutes)] = MinuteState.CLOSED
    return states


def count(states: npt.NDArray[np.int8]) -> CoverageCounts:
    """How many minutes are in each state."""
    tally = np.bincount(states, minlength=4)
    return CoverageCounts(
        closed=int(tally[MinuteState.CLOSED]),
        final=int(tally[MinuteState.FINAL]),
        quiet=int(tally[MinuteState.QUIET]),
        missing=int(tally[MinuteState.MISSING]),
    )


def runs(from_ms: int, states: npt.NDArray[np.int8], state: MinuteState) -> list[tuple[int, int]]:
    """Maximal `[start, end)` ranges of consecutive minutes in `state`."""
    hit = np.concatenate(([False], states == state, [False]))
    edges = np.flatnonzero(hit[1:] != hit[:-1])
    return [
        (from_ms + int(a) * MINUTE_MS, from_ms + int(b) * MINUTE_MS)
        for a, b in zip(edges[0::2], edges[1::2], strict=True)
    ]


@dataclass(frozen=True, slots=True)
class AnswerProof:
    """What one history answer for `[from_ms, to_ms)` proves (see `prove_quiet`)."""

    quiet: list[tuple[int, int]]  # ranges to record as fetched: empty minutes here are quiet
    proven_until_ms: int  # the broker has provably passed every minute before this
    doubtful: list[int]  # empty minutes below `proven_until_ms` that must not be quiet


def prove_quiet(
    from_ms: int,
    to_ms: int,
    bar_opens: Sequence[int],
    *,
    doubtful: Iterable[int] = (),
    passed_until_ms: int | None = None,
) -> AnswerProof:
    """The one rule for `quiet` (DESIGN §4), shared by the fast path and every command.

    A minute of the asked range `[from_ms, to_ms)` (minute-aligned) without a bar in the answer
    is quiet only when the broker has provably passed it *in this answer*: the answer holds a
    bar at a later minute, or the broker's own completeness signal (`passed_until_ms`, e.g.
    OANDA candles after it) covers it. Answers can be truncated at their end, never in their
    middle, so the empty minutes after the answer's last bar are not proven: they stay missing
    (pending) and must be asked again. `doubtful` minutes (ticks were seen in them, the stream
    was down, or the broker sent a candle for them that was refused) are never quiet when the
    answer has no bar for them.
    """
    if from_ms % MINUTE_MS or to_ms % MINUTE_MS:
        raise ValueError(f"answer range [{from_ms}, {to_ms}) is not minute-aligned")
    bars = set(bar_opens)
    last = max((m for m in bars if from_ms <= m < to_ms), default=None)
    proven = from_ms if last is None else last + MINUTE_MS
    if passed_until_ms is not None:
        proven = max(proven, passed_until_ms - passed_until_ms % MINUTE_MS)
    proven = min(max(proven, from_ms), to_ms)
    held_back = sorted({m for m in doubtful if from_ms <= m < proven and m not in bars})
    quiet: list[tuple[int, int]] = []
    cursor = from_ms
    for minute in held_back:
        minute -= minute % MINUTE_MS
        if minute > cursor:
            quiet.append((cursor, minute))
        cursor = max(cursor, minute + MINUTE_MS)
    if cursor < proven:
        quiet.append((cursor, proven))
    return AnswerProof(quiet=quiet, proven_until_ms=proven, doubtful=held_back)
