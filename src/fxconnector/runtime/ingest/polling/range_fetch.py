"""A command's fetch of a range of 1m history (warmup, backfill, repair): heavy priority,
chunked, each chunk asked again from where an answer ended early (DESIGN §9).

Rules: a failed chunk is reported and the rest goes on (nothing is retried); an answer with
nothing past the last proven minute is followed by a probe past the chunk for a later bar; what
stays unproven is reported in `RangeResult.pending` (missing, never quiet). Each chunk is flushed
off the event loop and the loop gets a turn; the 1m finals are durable before anything is
published. The command's derived buckets are its own (the live loop never does its heavy work).
Checking, storing and publishing an answer are the pipeline's (it passes itself in).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.errors import BadBrokerData, TransientIOError
from fxconnector.core.time_geom import MINUTE_MS, Timeframe, iso_utc
from fxconnector.runtime.governance.rails import Priority
from fxconnector.runtime.ingest.polling.derived_builder import DerivedBuilder
from fxconnector.runtime.store.port import FinalStore

if TYPE_CHECKING:
    from fxconnector.runtime.ingest.polling.durable import Offload
    from fxconnector.runtime.ingest.polling.pipeline import Pipeline

#: Re-asks of one command chunk whose answers end early, before its tail is left pending.
MAX_ASKS_PER_CHUNK = 12
#: How far past a command chunk's end a probe looks for a later bar (open market time).
PROBE_MS = 60 * MINUTE_MS


@dataclass(slots=True)
class RangeResult:
    """What one command fetch of a range did."""

    symbol: str
    from_ms: int
    to_ms: int
    bars_fetched: int = 0
    new_bars: int = 0
    revisions: int = 0
    derived: int = 0
    refused: int = 0
    failed_chunks: list[tuple[int, int, str]] = field(default_factory=list)
    #: Ranges the broker has not provably passed (its answers ended early): still missing.
    pending: list[tuple[int, int]] = field(default_factory=list)


class RangeFetch:
    """The range fetches of one pipeline's commands."""

    def __init__(
        self,
        pipeline: Pipeline,
        calendars: Mapping[str, TradingCalendar],
        store: FinalStore,
        timeframes: Sequence[Timeframe],
        *,
        safety_delay_ms: int,
        max_chunk_ms: int,
        offload: Offload,
    ) -> None:
        self._pipeline = pipeline
        self._calendars = calendars
        self._store = store
        self._timeframes = timeframes
        self._safety_delay_ms = safety_delay_ms
        self._max_chunk_ms = max_chunk_ms
        self._offload = offload

    async def fetch(
        self,
        symbol: str,
        from_ms: int,
        to_ms: int,
        *,
        caller: str,
        now_ms: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> RangeResult:
        """Fetch `[from_ms, to_ms)` of 1m history for a command (heavy priority), store it,
        derive what it touched and publish new bars and revisions. Retries nothing: a failed
        chunk is reported and the rest goes on."""
        calendar = self._calendars[symbol]
        start = from_ms - from_ms % MINUTE_MS
        safe_end = now_ms - self._safety_delay_ms
        safe_end -= safe_end % MINUTE_MS
        end = min(to_ms, safe_end)
        end -= end % MINUTE_MS
        chunks = _chunks(calendar.open_intervals(start, end), self._max_chunk_ms)
        # The command's buckets are its own: the live loop's advance never does its heavy work.
        builder = DerivedBuilder(self._store, self._calendars, self._timeframes)
        result = RangeResult(symbol=symbol, from_ms=start, to_ms=max(start, end))
        for index, (a, b) in enumerate(chunks):
            await self._fetch_chunk(symbol, a, b, caller, now_ms, safe_end, result, builder)
            # Per chunk (a few files), off the event loop.
            await self._offload(self._store.flush)
            if progress is not None:
                progress(index + 1, len(chunks))
            # A slice ends here: the fast path, HTTP and the surface get the loop back.
            await asyncio.sleep(0)
        await self._offload(self._store.flush)  # the 1m finals are durable before publishing
        new, revised = await self._pipeline.derive_ready(now_ms, builder=builder)
        result.derived += new + revised
        await self._pipeline.publish_durable(
            (), True
        )  # the 1m finals, when nothing above was ready
        return result

    async def _fetch_chunk(
        self,
        symbol: str,
        from_ms: int,
        to_ms: int,
        caller: str,
        now_ms: int,
        safe_end: int,
        result: RangeResult,
        builder: DerivedBuilder,
    ) -> None:
        """One command chunk: asked again from where an answer ended early; when an answer has
        nothing past the last proven minute, a probe looks past the chunk for a later bar.
        What stays unproven is reported in `result.pending` (missing, never quiet)."""
        cursor, probing = from_ms, False
        progress = self._pipeline.fast.progress.get(symbol)
        for _ in range(MAX_ASKS_PER_CHUNK):
            ask_to = self._probe_end(symbol, to_ms, safe_end) if probing else to_ms
            if ask_to <= cursor:
                break
            try:
                answer = await self._pipeline.history(
                    symbol, cursor, ask_to, caller, Priority.HEAVY
                )
            except (TransientIOError, BadBrokerData) as exc:
                self._pipeline.stats.history_failures += 1
                result.failed_chunks.append((cursor, to_ms, str(exc)[:200]))
                self._pipeline.error(
                    now_ms, "history.failed", f"{caller} {symbol} {iso_utc(cursor)}: {exc}"
                )
                return
            self._pipeline.stats.history_requests += 1
            seen = set() if progress is None else set(progress.ticked)
            refused_before = sum(self._pipeline.stats.candles_refused.values())
            accepted, proof, fresh = self._pipeline.take_answer(
                symbol, answer, cursor, ask_to, now_ms, seen, builder
            )
            result.bars_fetched += len(accepted)
            result.new_bars += sum(1 for e in fresh if e.rev == 0)
            result.revisions += sum(1 for e in fresh if e.rev > 0)
            result.refused += sum(self._pipeline.stats.candles_refused.values()) - refused_before
            if proof.proven_until_ms >= to_ms:
                return
            if proof.proven_until_ms > cursor:
                cursor, probing = proof.proven_until_ms, False  # ended early: ask from there
            elif not probing:
                probing = True  # nothing past `cursor`: look past the chunk for a later bar
            else:
                break
        result.pending.append((cursor, to_ms))

    def _probe_end(self, symbol: str, to_ms: int, safe_end: int) -> int:
        """The end of a probe past `to_ms`: PROBE_MS from the next open minute, before
        `safe_end`."""
        calendar = self._calendars[symbol]
        first_open = to_ms if calendar.is_open(to_ms) else calendar.next_open(to_ms)
        if first_open is None:
            return min(to_ms, safe_end)
        return max(to_ms, min(safe_end, first_open + PROBE_MS))


def _chunks(intervals: Sequence[tuple[int, int]], size_ms: int) -> list[tuple[int, int]]:
    """Open intervals cut into pieces of at most `size_ms`."""
    out = []
    for start, end in intervals:
        cursor = start
        while cursor < end:
            out.append((cursor, min(end, cursor + size_ms)))
            cursor += size_ms
    return out
