"""The SMC engine of one symbol/timeframe: final bars in, hints out (DESIGN §15).

Rules: sans-I/O and causal. `update(bar)` takes the next final bar and returns the hints that bar
confirms, each with `confirm_ts == bar.close_ms`, in canonical order (hints.order_key); nothing
before is ever changed. Every definition reads only bars up to the current one, so a run over a
prefix of a series gives exactly the hints of the full run confirmed within that prefix.

Input rules: a preview bar, another symbol/tf, or a bar older than the last one that is not a
revision is a ContractViolation. The same bar again (a redelivery) returns nothing. A revision
(the same open_ms with a higher `rev`) re-derives from that bar on: the engine restores the copy
of its state taken at or before the bar (one every `checkpoint_every_bars`), replays the bars in
between, and returns, ordered, every hint whose re-derived content differs from what it emitted
(same id, `rev + 1`; `retracted: true` when the hint is no longer found) and new hints (rev 0).
A revision older than `revision_horizon_bars` raises RevisionTooOld: run again from the store.
"""

from __future__ import annotations

import bisect
import zoneinfo
from dataclasses import dataclass

import msgspec

from fxconnector.core.errors import ConfigError, ContractViolation, RevisionTooOld
from fxconnector.core.model.bar import FINAL_SOURCES, OhlcvEvent
from fxconnector.core.model.smc import SmcHint
from fxconnector.core.time_geom import DayGrid, Timeframe, parse_timeframe
from fxconnector.smc.config import SmcConfig
from fxconnector.smc.fvg import FvgDetector
from fxconnector.smc.hints import HintMaker, order_key
from fxconnector.smc.levels import PreviousLevels, day_grid
from fxconnector.smc.liquidity import Atr, LiquidityPools
from fxconnector.smc.order_blocks import OrderBlocks
from fxconnector.smc.sessions import SessionTracker
from fxconnector.smc.structure import StructureTracker
from fxconnector.smc.swings import SwingDetector


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown IANA time zone {name!r}") from None


@dataclass(slots=True)
class _State:
    """Everything the hints depend on; `clone` copies it for a checkpoint."""

    swings: SwingDetector
    fvg: FvgDetector
    structure: StructureTracker
    blocks: OrderBlocks
    atr: Atr
    liquidity: LiquidityPools
    levels: PreviousLevels
    sessions: tuple[SessionTracker, ...]

    def clone(self) -> _State:
        return _State(
            self.swings.clone(),
            self.fvg.clone(),
            self.structure.clone(),
            self.blocks.clone(),
            self.atr.clone(),
            self.liquidity.clone(),
            self.levels.clone(),
            tuple(s.clone() for s in self.sessions),
        )

    def active(self) -> list[SmcHint]:
        found = [
            *self.structure.active(),
            *self.fvg.active(),
            *self.blocks.active(),
            *self.liquidity.active(),
            *self.levels.active(),
        ]
        for session in self.sessions:
            found.extend(session.active())
        return found

    def step(self, bar: OhlcvEvent) -> list[SmcHint]:
        out: list[SmcHint] = []
        self.fvg.on_bar(bar, out)
        self.blocks.mitigations(bar, out)
        self.liquidity.sweeps(bar, out)
        breaks = self.structure.on_bar(bar, out)
        for found in breaks:
            self.blocks.on_break(found, out)
        self.atr.on_bar(bar)
        atr = self.atr.value
        for swing in self.swings.on_bar(bar, out):
            self.structure.on_swing(swing)
            self.liquidity.on_swing(swing, atr, out)
        if breaks:
            # Legs start at waiting swings or at swings still to be confirmed: nothing older.
            starts = [self.structure.oldest_leg_ms(), self.swings.oldest_open_ms()]
            self.blocks.forget_before(min(s for s in starts if s is not None))
        self.levels.on_bar(bar, out)
        for session in self.sessions:
            session.on_bar(bar, out)
        if len(out) > 1:
            out.sort(key=order_key)
        return out


class SmcEngine:
    """Causal SMC hints of one symbol/timeframe from its final bars, bar by bar."""

    def __init__(
        self,
        symbol: str,
        tf: str | Timeframe,
        config: SmcConfig | None = None,
        *,
        grid: DayGrid | None = None,
    ) -> None:
        """`grid`: the calendar's trading-day grid; by default the config's boundary."""
        self.symbol = symbol
        self.tf = tf if isinstance(tf, Timeframe) else parse_timeframe(tf)
        self.config = config = config if config is not None else SmcConfig()
        if grid is None:
            grid = day_grid(_zone(config.trading_day_zone), config.trading_day_start_minute)
        make = HintMaker(symbol, self.tf)
        sessions: tuple[SessionTracker, ...] = ()
        if self.tf.ms <= config.sessions_max_tf.ms:
            sessions = tuple(
                SessionTracker(make, s.name.kind, _zone(s.zone), s.start_minute, s.end_minute)
                for s in config.sessions
            )
        self._state = _State(
            SwingDetector(make, config.swing_length_for(self.tf)),
            FvgDetector(make),
            StructureTracker(make),
            OrderBlocks(make),
            Atr(config.atr_length),
            LiquidityPools(make, config.liquidity_tolerance_atr, config.liquidity_lookback),
            PreviousLevels(make, grid),
            sessions,
        )
        # Bars kept for revisions: _bars[k] is bar number _first + k of the run.
        self._bars: list[OhlcvEvent] = []
        self._opens: list[int] = []
        self._first = 0
        self._count = 0
        # (bar number, state before that bar), oldest first.
        self._checkpoints: list[tuple[int, _State]] = []
        # The latest revision of every hint confirmed within the kept bars, by id.
        self._emitted: dict[str, SmcHint] = {}

    @property
    def bars_seen(self) -> int:
        """How many bars the run has taken (a revision does not count)."""
        return self._count

    @property
    def last_close_ms(self) -> int | None:
        """close_ms of the newest bar, None before the first."""
        return self._bars[-1].close_ms if self._bars else None

    def active(self) -> list[SmcHint]:
        """What is live now, in canonical order (for a snapshot): swings not broken yet, zones
        (FVG, order blocks, liquidity) not mitigated or swept, the latest previous day/week
        levels and the latest session of each kind. Each at the revision last returned."""
        found = [self._emitted.get(h.id, h) for h in self._state.active()]
        return sorted(found, key=order_key)

    def update(self, bar: OhlcvEvent) -> list[SmcHint]:
        """The hints `bar` confirms (or, for a revision, the re-derived ones)."""
        self._check(bar)
        if self._bars and bar.open_ms <= self._opens[-1]:
            return self._revise(bar)
        return self._advance(bar)

    def _check(self, bar: OhlcvEvent) -> None:
        if bar.symbol != self.symbol or bar.tf is not self.tf:
            raise ContractViolation(
                f"smc engine of {self.symbol} {self.tf.value} got a bar of "
                f"{bar.symbol} {bar.tf.value}"
            )
        if not bar.complete or bar.source not in FINAL_SOURCES or bar.event_ts != bar.close_ms:
            raise ContractViolation(
                f"smc takes final bars only; got {bar.symbol} {bar.tf.value} open_ms "
                f"{bar.open_ms} complete={bar.complete} source={bar.source.value}"
            )

    def _advance(self, bar: OhlcvEvent) -> list[SmcHint]:
        hints = self._step(bar)
        self._bars.append(bar)
        self._opens.append(bar.open_ms)
        for hint in hints:
            self._emitted[hint.id] = hint
        return hints

    def _step(self, bar: OhlcvEvent) -> list[SmcHint]:
        """One bar through the detectors, with a checkpoint first when one is due."""
        config = self.config
        if self._count % config.checkpoint_every_bars == 0:
            self._checkpoints.append((self._count, self._state.clone()))
            self._forget(self._count - config.revision_horizon_bars)
        self._count += 1
        return self._state.step(bar)

    def _forget(self, before: int) -> None:
        """Drop checkpoints, bars and hints no revision can reach any more."""
        cps = self._checkpoints
        drop = 0
        while drop + 1 < len(cps) and cps[drop + 1][0] <= before:
            drop += 1
        if not drop:
            return
        del cps[:drop]
        cut = cps[0][0] - self._first
        del self._bars[:cut]
        del self._opens[:cut]
        self._first = cps[0][0]
        if self._bars:
            oldest_close = self._bars[0].close_ms
            live = {h.id for h in self._state.active()}  # keep their revision for `active`
            self._emitted = {
                k: h for k, h in self._emitted.items() if h.confirm_ts >= oldest_close or k in live
            }

    def _revise(self, bar: OhlcvEvent) -> list[SmcHint]:
        position = bisect.bisect_left(self._opens, bar.open_ms)
        if position == len(self._opens) or self._opens[position] != bar.open_ms:
            if position == 0 and self._first > 0:
                raise RevisionTooOld(
                    f"smc {self.symbol} {self.tf.value}: bar {bar.open_ms} is older than the "
                    f"revision horizon ({self.config.revision_horizon_bars} bars); rerun from "
                    f"the store"
                )
            raise ContractViolation(
                f"smc {self.symbol} {self.tf.value}: bar {bar.open_ms} is out of order "
                f"(last open_ms {self._opens[-1]}) and revises no bar"
            )
        old = self._bars[position]
        if bar == old:
            return []
        if bar.rev <= old.rev:
            raise ContractViolation(
                f"smc {self.symbol} {self.tf.value}: bar {bar.open_ms} rev {bar.rev} differs from "
                f"the rev {old.rev} already taken and is not newer"
            )
        number = self._first + position
        index = bisect.bisect_right([n for n, _ in self._checkpoints], number) - 1
        if index < 0:
            raise RevisionTooOld(
                f"smc {self.symbol} {self.tf.value}: bar {bar.open_ms} is older than the "
                f"revision horizon; rerun from the store"
            )
        start, saved = self._checkpoints[index]
        del self._checkpoints[index:]
        self._state = saved.clone()
        self._count = start
        later = self._bars[start - self._first :]
        later[position - (start - self._first)] = bar
        del self._bars[start - self._first :]
        del self._opens[start - self._first :]
        derived: list[SmcHint] = []
        for replayed in later:
            hints = self._step(replayed)
            if replayed.open_ms >= bar.open_ms:
                derived.extend(hints)
            self._bars.append(replayed)
            self._opens.append(replayed.open_ms)
        return self._difference(derived, bar.close_ms)

    def _difference(self, derived: list[SmcHint], since_ms: int) -> list[SmcHint]:
        """What changed between the hints emitted since `since_ms` and their re-derivation."""
        emitted = self._emitted
        before = {k: h for k, h in emitted.items() if h.confirm_ts >= since_ms and not h.retracted}
        changes: list[SmcHint] = []
        for hint in derived:
            previous = emitted.get(hint.id)
            before.pop(hint.id, None)
            if previous is None:
                changes.append(hint)
            elif previous.retracted or msgspec.structs.replace(previous, rev=0) != hint:
                changes.append(msgspec.structs.replace(hint, rev=previous.rev + 1))
        for gone in before.values():
            changes.append(msgspec.structs.replace(gone, rev=gone.rev + 1, retracted=True))
        changes.sort(key=order_key)
        for hint in changes:
            emitted[hint.id] = hint
        return changes
