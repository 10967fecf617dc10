"""The scheduled repair (DESIGN §9): tail_guard --repair on a timer, so a bucket with one missing
minute becomes final without an operator.

Rules:
- Every `interval_s` (0: never; the first run one interval after start) it runs the tail_guard
  handler with `repair=true` over the last `window_hours` of every symbol: the same audit, repair
  caps, heavy history budget (the 1m fast path keeps priority) and re-derive/republish as the
  operator's command. There is no second repair.
- It takes the runner's one heavy slot: while an operator command runs, the run is skipped
  (state `skipped`, said in status) and tried again one interval later; while it runs,
  operator commands are refused as busy.
- `last` says what the last run fixed (missing minutes that became final or quiet), what it
  could not (minutes still missing, minutes deferred over the caps, failed history requests)
  and how many derived bars it republished. `on_run` hands every finished run to the metrics.
- A command error (a bad symbol, a contract error) fails the run and is reported; a bug is not
  caught here: the task dies and the lifecycle stops the process loudly.
- Time comes from the injected clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Final

from fxconnector.core.errors import FxConnectorError
from fxconnector.core.model.command import TailGuardArgs, TailGuardCommand
from fxconnector.core.model.status import RepairRun, RepairState, RepairStatus
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.ingest.commands.handlers import CommandContext, tail_guard
from fxconnector.runtime.ingest.commands.runner import CommandRunner

#: Symbols named in `RepairRun.unresolved` (status_v2's bound).
UNRESOLVED_SHOWN: Final = 16
HOLDER: Final = "scheduled repair"


class RepairScheduler:
    """Runs the tail_guard repair over every symbol on a timer."""

    def __init__(
        self,
        ctx: CommandContext,
        runner: CommandRunner,
        clock: Clock,
        *,
        symbols: Sequence[str],
        interval_s: int,
        window_hours: int,
        on_run: Callable[[RepairRun], None] | None = None,
    ) -> None:
        self._ctx = ctx
        self._runner = runner
        self._clock = clock
        self._symbols = list(symbols)
        self._interval_ms = interval_s * 1000
        self._window_hours = window_hours
        self._on_run = on_run
        self.runs = 0
        self.next_run_ms: int | None = None
        self.last: RepairRun | None = None

    @property
    def enabled(self) -> bool:
        return self._interval_ms > 0

    def status(self) -> RepairStatus | None:
        """The `repair` part of status (None when disabled)."""
        if not self.enabled:
            return None
        return RepairStatus(
            interval_s=self._interval_ms // 1000,
            window_hours=self._window_hours,
            runs=self.runs,
            next_run_ms=self.next_run_ms,
            last_run=self.last,
        )

    async def run(self) -> None:
        """One repair per interval, forever (cancel to stop); returns at once when disabled."""
        if not self.enabled:
            return
        while True:
            self.next_run_ms = self._clock.now_ms() + self._interval_ms
            await self._clock.sleep_until(self.next_run_ms)
            await self.run_once()

    async def run_once(self) -> RepairRun:
        """Repair the window now; the finished run (also in `last`)."""
        now = self._clock.now_ms()
        self.runs += 1
        if self._runner.busy:
            return self._finish(_empty(now, RepairState.SKIPPED, "an operator command is running"))
        self.last = _empty(now, RepairState.RUNNING, None)
        with self._runner.hold(HOLDER):
            try:
                reports = []
                for symbol in self._symbols:
                    # One symbol per tail_guard, the loop given back between them: a run over
                    # many symbols is many short slices, not one long stall.
                    reports.append(
                        await tail_guard(self._ctx, self._command(now, symbol), now, None)
                    )
                    await asyncio.sleep(0)
            except FxConnectorError as exc:
                return self._finish(_empty(now, RepairState.FAILED, str(exc)[:200]))
        return self._finish(_summary(now, self._clock.now_ms(), reports))

    def _command(self, now: int, symbol: str) -> TailGuardCommand:
        return TailGuardCommand(
            req_id=f"repair-{now}",
            ts=now,
            args=TailGuardArgs(symbols=[symbol], window_hours=self._window_hours, repair=True),
        )

    def _finish(self, run: RepairRun) -> RepairRun:
        self.last = run
        if self._on_run is not None:
            self._on_run(run)
        return run


def _empty(now: int, state: RepairState, detail: str | None) -> RepairRun:
    return RepairRun(
        started_ms=now,
        finished_ms=None if state is RepairState.RUNNING else now,
        state=state,
        fixed_minutes=0,
        republished=0,
        unresolved_minutes=0,
        unresolved={},
        deferred_minutes=0,
        failed_requests=0,
        detail=detail,
    )


def _summary(started: int, finished: int, reports: list[dict[str, Any]]) -> RepairRun:
    """What the tail_guard reports say, summed over symbols."""
    fixed = republished = deferred = failed = 0
    unresolved: dict[str, int] = {}
    for report in reports:
        for symbol, entry in report["symbols"].items():
            before = entry["before"]["coverage"]["missing"]
            after = entry["after"]["coverage"]["missing"]
            fixed += max(0, before - after)
            if after:
                unresolved[symbol] = after
            republished += entry["rederived"] + sum(r["derived"] for r in entry["repaired"])
            failed += sum(len(r["failed_chunks"]) for r in entry["repaired"])
            deferred += entry["deferred_minutes"]
    return RepairRun(
        started_ms=started,
        finished_ms=finished,
        state=RepairState.DONE,
        fixed_minutes=fixed,
        republished=republished,
        unresolved_minutes=sum(unresolved.values()),
        unresolved={s: unresolved[s] for s in sorted(unresolved)[:UNRESOLVED_SHOWN]},
        deferred_minutes=deferred,
        failed_requests=failed,
    )
