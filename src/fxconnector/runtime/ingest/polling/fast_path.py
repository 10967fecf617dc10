"""Close detection (the fast path): which symbol's ended minutes are asked when, and what each
answer proves (DESIGN §5, issue 12).

Rules:
- Once a minute has ended plus the safety delay, its 1m bar is asked from the broker's history,
  from the first minute the broker has not provably passed (so the answer that shows a later
  bar covers the pending empty minutes too). A catch-up asks at most `MAX_ASKS_PER_ADVANCE`
  chunks per symbol per advance, then says it has `more`.
- The history plan (core.history_plan) decides when a symbol is asked: at its round-robin turn
  when it is every k > 1 minutes, or at once when it is k minutes or more behind (a catch-up, a
  missed turn). With k = 1 every symbol is asked every minute.
- Symbols run concurrently: each symbol's answer is stored, made durable and handed to the sink
  by `commit` as soon as it is checked, never waiting for another symbol's call. At most
  `max_in_flight` fast-path calls are in flight (1 by default, the brokers' rule, which the
  budget enforces too); they are served in symbol order. A failing symbol backs off alone.
- A minute with ticks but no bar is asked alone again with backoff and, after
  `max_empty_retries`, left missing and reported. A whole chunk of open time without a bar is
  left missing (repair's job), counted and reported.

This module owns the per-symbol progress; checking, storing and publishing an answer are the
pipeline's (it passes itself in).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fxconnector.core.calendar import TradingCalendar
from fxconnector.core.errors import BadBrokerData, TransientIOError
from fxconnector.core.history_plan import HistoryPlan
from fxconnector.core.time_geom import MINUTE_MS, iso_utc
from fxconnector.runtime.governance.rails import Priority
from fxconnector.runtime.ingest.broker.port import HistoryAnswer

if TYPE_CHECKING:
    from fxconnector.runtime.ingest.polling.pipeline import Pipeline

FAST_PATH = "fast_path"
#: Fast-path calls per symbol in one advance (a catch-up continues at the next advance).
MAX_ASKS_PER_ADVANCE = 8


@dataclass(slots=True)
class SymbolProgress:
    next_minute_ms: int  # the first minute not yet fetched by the fast path
    pending_ms: int  # the first minute the broker has not provably passed (final/quiet below)
    retry_at_ms: int = 0  # after a failed call, no new call before this
    failures: int = 0
    ticked: set[int] = field(default_factory=set)  # minutes in which ticks were applied
    empty: dict[int, tuple[int, int]] = field(default_factory=dict)  # minute -> (tries, due)
    given_up: set[int] = field(default_factory=set)  # ticked minutes reported as no_bar
    last_ask: tuple[int, int] = (0, 0)  # the fast path's last asked window
    advanced_ms: int | None = None  # when pending_ms last moved (None: not started)
    more: bool = False  # the last advance stopped at MAX_ASKS_PER_ADVANCE: more to fetch


class FastPath:
    """The per-symbol close detection of one pipeline."""

    def __init__(
        self,
        pipeline: Pipeline,
        calendars: Mapping[str, TradingCalendar],
        start_ms: Mapping[str, int],
        *,
        safety_delay_ms: int,
        max_chunk_ms: int,
        max_empty_retries: int,
        retry_base_ms: int,
        retry_cap_ms: int,
        plan: HistoryPlan | None,
        max_in_flight: int = 1,
    ) -> None:
        self._pipeline = pipeline
        self._calendars = calendars
        self._safety_delay_ms = safety_delay_ms
        self._max_chunk_ms = max_chunk_ms
        self._max_empty_retries = max_empty_retries
        self._retry_base_ms = retry_base_ms
        self._retry_cap_ms = retry_cap_ms
        self._plan = plan
        self._max_in_flight = max_in_flight
        self._in_flight: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self.progress = {
            symbol: SymbolProgress(start - start % MINUTE_MS, start - start % MINUTE_MS)
            for symbol, start in start_ms.items()
        }
        self._index = {symbol: i for i, symbol in enumerate(start_ms)}
        self._outages: list[tuple[int, int]] = []
        #: Told `(symbol, next_minute_ms)` as the fast path moves on.
        self.on_fetched: Callable[[str, int], None] | None = None

    def ready_until(self, now_ms: int) -> int:
        """The end of the last minute that may be asked at `now_ms` (ended + safety delay)."""
        ready = now_ms - self._safety_delay_ms
        return ready - ready % MINUTE_MS

    async def run(self, now_ms: int, commit: Callable[[bool], Awaitable[None]]) -> None:
        """Every symbol's turn at `now_ms`, concurrently; `commit(wrote)` makes a symbol's
        writes durable and publishes them as soon as its calls are done."""
        if len(self.progress) == 1:
            for symbol, progress in self.progress.items():
                await self._symbol(symbol, progress, now_ms, commit)
            return
        try:
            async with asyncio.TaskGroup() as group:
                for symbol, progress in self.progress.items():
                    group.create_task(self._symbol(symbol, progress, now_ms, commit))
        except BaseExceptionGroup as failed:
            # The first failure as itself (a StoreError stays a StoreError); the other
            # symbols' calls were cancelled with it.
            raise failed.exceptions[0] from None

    async def _symbol(
        self,
        symbol: str,
        progress: SymbolProgress,
        now_ms: int,
        commit: Callable[[bool], Awaitable[None]],
    ) -> None:
        wrote = await self._ask(symbol, progress, now_ms)
        wrote |= await self._retry_empty(symbol, progress, now_ms)
        await commit(wrote)

    def next_due_ms(self, now_ms: int) -> int:
        """When the fast path has work next: now while a catch-up has more, else the earliest
        of the next minute boundary plus the safety delay, a failed call's retry and an empty
        minute's retry."""
        ready_until = self.ready_until(now_ms)
        due = ready_until + MINUTE_MS + self._safety_delay_ms
        for symbol, progress in self.progress.items():
            if progress.more:
                return now_ms
            if progress.retry_at_ms > now_ms:
                due = min(due, progress.retry_at_ms)
            elif progress.next_minute_ms < ready_until and self._turn(
                symbol, progress, ready_until
            ):
                return now_ms  # minutes ended while the last advance ran
            for _tries, at in progress.empty.values():
                due = min(due, max(at, now_ms))
        return due

    def _turn(self, symbol: str, progress: SymbolProgress, ready_until: int) -> bool:
        """True when the plan lets `symbol` be asked with minutes up to `ready_until` ready."""
        plan = self._plan
        if plan is None or plan.every_minutes == 1:
            return True
        behind = ready_until - progress.next_minute_ms >= plan.every_minutes * MINUTE_MS
        return behind or plan.due(self._index[symbol], ready_until // MINUTE_MS)

    async def _ask(self, symbol: str, progress: SymbolProgress, now_ms: int) -> bool:
        ready_until = self.ready_until(now_ms)
        progress.more = False
        if progress.advanced_ms is None:
            progress.advanced_ms = now_ms
        if ready_until <= progress.next_minute_ms or now_ms < progress.retry_at_ms:
            return False
        if not self._turn(symbol, progress, ready_until):
            return False
        calendar = self._calendars[symbol]
        wrote = False
        for _ in range(MAX_ASKS_PER_ADVANCE):
            # Ask again from the first minute the broker has not provably passed.
            start = min(progress.pending_ms, progress.next_minute_ms)
            intervals = calendar.open_intervals(start, ready_until) if start < ready_until else []
            if not intervals:
                progress.next_minute_ms = max(progress.next_minute_ms, ready_until)
                progress.pending_ms = max(progress.pending_ms, ready_until)
                break
            ask_from, ask_to = open_window(intervals, self._max_chunk_ms)
            chunk_limited = (
                open_minutes(intervals, ask_from, ask_to) * MINUTE_MS >= self._max_chunk_ms
            )
            window = (ask_from, ask_to)
            if not chunk_limited and ask_to < ready_until and progress.last_ask == window:
                # The market closed after the pending minutes and nothing has opened since the
                # last ask: they are asked again once it opens (the next bar proves them).
                progress.next_minute_ms = max(progress.next_minute_ms, ready_until)
                break
            progress.last_ask = window
            if not await self._fetch(symbol, progress, ask_from, ask_to, now_ms):
                return wrote
            wrote = True
            progress.next_minute_ms = max(progress.next_minute_ms, ask_to)
            if self.on_fetched is not None:
                self.on_fetched(symbol, progress.next_minute_ms)
            if progress.pending_ms >= ask_to:
                continue
            if ask_to >= ready_until or not chunk_limited:
                break  # the tail near now (or before a closure): asked again later
            if progress.pending_ms <= ask_from:
                # A whole chunk of open time without a bar: it cannot be proven now. It stays
                # missing (repair's job); the fast path moves on.
                self._pipeline.stats.unproven_minutes += open_minutes(intervals, ask_from, ask_to)
                self._pipeline.error(
                    now_ms,
                    "history.unproven",
                    f"{symbol} {iso_utc(ask_from)}..{iso_utc(ask_to)}: the broker's history "
                    "has no bar there; left missing for repair",
                )
                progress.pending_ms = ask_to
        else:
            progress.more = progress.next_minute_ms < ready_until
        floor = min(progress.pending_ms, progress.next_minute_ms)
        progress.ticked = {m for m in progress.ticked if m >= floor}
        progress.given_up = {m for m in progress.given_up if m >= floor}
        return wrote

    async def _fetch(
        self, symbol: str, progress: SymbolProgress, from_ms: int, to_ms: int, now_ms: int
    ) -> bool:
        """Fetch, check, store one range; False when the call failed (retry later)."""
        pipeline = self._pipeline
        pipeline.stats.history_requests += 1
        try:
            async with self._slot():
                answer = await pipeline.history(symbol, from_ms, to_ms, FAST_PATH, Priority.FAST)
        except (TransientIOError, BadBrokerData) as exc:
            pipeline.stats.history_failures += 1
            progress.failures += 1
            backoff = min(self._retry_cap_ms, self._retry_base_ms * 2 ** (progress.failures - 1))
            progress.retry_at_ms = now_ms + backoff
            pipeline.error(now_ms, "history.failed", f"{symbol} {iso_utc(from_ms)}: {exc}")
            return False
        progress.failures = 0
        progress.retry_at_ms = 0
        # Minutes we saw ticks in, and minutes of a broker outage (we could not have seen
        # ticks then), are not proven quiet by an answer without a bar for them.
        seen = {m for m in progress.ticked if from_ms <= m < to_ms}
        seen |= self._outage_minutes(from_ms, to_ms)
        _, proof, _ = pipeline.take_answer(symbol, answer, from_ms, to_ms, now_ms, seen)
        # A minute with ticks but no bar: asked alone again with backoff, whether the broker has
        # passed it (held back from quiet) or not yet (its history lags "now").
        tail = (m for m in seen if m >= proof.proven_until_ms)
        for minute in [*proof.doubtful, *tail]:
            if minute in seen and minute not in progress.given_up:
                tries, _ = progress.empty.get(minute, (0, 0))
                progress.empty.setdefault(minute, (tries, now_ms + self._retry_base_ms))
        if proof.proven_until_ms > progress.pending_ms:
            progress.pending_ms = proof.proven_until_ms
            progress.advanced_ms = now_ms
        return True

    def _slot(self) -> asyncio.Semaphore:
        """The fast path's in-flight slots (one semaphore per event loop)."""
        loop = asyncio.get_running_loop()
        if self._in_flight is None or self._in_flight[0] is not loop:
            self._in_flight = (loop, asyncio.Semaphore(self._max_in_flight))
        return self._in_flight[1]

    def note_outage(self, from_ms: int, to_ms: int) -> None:
        """The broker stream was down (or stale) over `[from_ms, to_ms)`."""
        start = from_ms - from_ms % MINUTE_MS
        if to_ms > start:
            self._outages.append((start, to_ms))

    def _outage_minutes(self, from_ms: int, to_ms: int) -> set[int]:
        return minutes_in(self._outages, from_ms, to_ms)

    async def _retry_empty(self, symbol: str, progress: SymbolProgress, now_ms: int) -> bool:
        """Ask again for minutes whose history came back empty although ticks were seen."""
        pipeline = self._pipeline
        wrote = False
        for minute, (tries, due) in sorted(progress.empty.items()):
            if due > now_ms:
                continue
            pipeline.stats.empty_history_retries += 1
            pipeline.stats.history_requests += 1
            try:
                async with self._slot():
                    answer = await pipeline.history(
                        symbol, minute, minute + MINUTE_MS, FAST_PATH, Priority.FAST
                    )
            except (TransientIOError, BadBrokerData) as exc:
                pipeline.stats.history_failures += 1
                answer = HistoryAnswer([])
                pipeline.error(now_ms, "history.failed", f"{symbol} {iso_utc(minute)}: {exc}")
            accepted, _ = pipeline.check_history(symbol, answer, minute, minute + MINUTE_MS, now_ms)
            if accepted:
                del progress.empty[minute]
                pipeline.store_finals(symbol, accepted)
                pipeline.derived.touch(symbol, minute, minute + MINUTE_MS)
                wrote = True
            elif tries + 1 >= self._max_empty_retries:
                del progress.empty[minute]
                progress.given_up.add(minute)
                pipeline.error(
                    now_ms,
                    "history.no_bar",
                    f"{symbol} {iso_utc(minute)}: ticks were seen but the broker's history has "
                    f"no bar after {tries + 1} tries; left missing for tail_guard",
                )
            else:
                delay = min(self._retry_cap_ms, self._retry_base_ms * 2 ** (tries + 1))
                progress.empty[minute] = (tries + 1, now_ms + delay)
        return wrote

    def final_lag_ms(self, symbol: str, now_ms: int) -> int:
        """Open market time between the symbol's proven frontier (every minute before it is
        final, quiet or given up as missing) and the last minute that could be fetched."""
        progress = self.progress[symbol]
        ready_until = self.ready_until(now_ms)
        if progress.pending_ms >= ready_until:
            return 0
        intervals = self._calendars[symbol].open_intervals(progress.pending_ms, ready_until)
        return sum(b - a for a, b in intervals)


def open_window(intervals: Sequence[tuple[int, int]], size_ms: int) -> tuple[int, int]:
    """From the first open minute, the range holding at most `size_ms` of open time."""
    budget = size_ms
    end = intervals[0][0]
    for start, stop in intervals:
        take = min(stop - start, budget)
        end = start + take
        budget -= take
        if budget <= 0:
            break
    return intervals[0][0], end


def minutes_in(ranges: Sequence[tuple[int, int]], from_ms: int, to_ms: int) -> set[int]:
    """The minutes of `ranges` inside `[from_ms, to_ms)`."""
    minutes: set[int] = set()
    for start, end in ranges:
        lo, hi = max(start, from_ms), min(end, to_ms)
        minutes.update(range(lo - lo % MINUTE_MS, hi, MINUTE_MS))
    return minutes


def open_minutes(intervals: Sequence[tuple[int, int]], from_ms: int, to_ms: int) -> int:
    """Open minutes of `intervals` inside `[from_ms, to_ms)`."""
    total = sum(max(0, min(b, to_ms) - max(a, from_ms)) for a, b in intervals)
    return total // MINUTE_MS
