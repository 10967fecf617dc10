"""The live SMC consumer (DESIGN §15): final bars from the public surface in, hints out.

Rules:
- It reads bars only as any client does (`fxconnector.client.SurfaceConsumer`: snapshots plus
  the events stream, merged by the policy of `client.merge`), and feeds each series' engine
  (`fxconnector.smc.SmcEngine`) its FINAL bars in open_ms order, each once. Previews are
  never fed. The engine code path is the store run's (`fxconnector smc --store`): the same
  bars give the same hints, byte for byte.
- What it publishes, per series and batch, is one atomic script call (`writes`): the hints to
  `NS:smc:events`, the snapshot's kept hints (`window`), its position (`state`) and cursor.
- Start and restart are one code path (crash-only). Per series: with no SMC snapshot the
  engine starts at the series' first final in `source` (the SSOT: the origin of the store run
  too), else at the oldest final the surface holds, and publishes the hints of every final
  from there (a long history in bounded atomic steps). Engines use the symbol's trading-day
  grid (`grids`, the calendar's), as the store run does. With a snapshot, a fresh engine is
  re-warmed with the finals `origin..last_open` (from `source` for what the surface no longer
  holds; their hints were published already and are dropped), then goes on after
  `last_open`: exactly the uninterrupted run, no hint twice, none skipped. A re-warm that
  finds fewer bars than the state counts is logged and counted (`rewarm_short`): its hints
  may then differ from the uninterrupted run's.
- A revision of a bar already fed goes to the running engine, which re-derives from it and
  returns revised hints (`rev + 1`, or `retracted`), published like any; one older than the
  engine's revision horizon is counted (`late_finals`) and logged: rerun from the store
  (`fxconnector smc --store`). A final inserted at or before `last_open` (a repaired gap) or
  one read again after a resync is not fed. A restart re-warms from the latest revisions: a
  hint revised before the restart and revised again after it may then carry a lower `rev`.
- Redis trouble never loses a hint: hints not yet written stay queued with their state and
  are written once Redis answers (capped exponential backoff with jitter). A restarted empty
  Redis gets the in-memory window and state back on the next write.
- A malformed SMC snapshot is reported and treated as absent (a fresh origin).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from redis.exceptions import NoScriptError, RedisError

from fxconnector.client.backoff import Backoff
from fxconnector.client.consumer import SurfaceConsumer
from fxconnector.client.merge import BarBook, Change, ChangeKind
from fxconnector.core.errors import ContractViolation, RevisionTooOld, SurfaceUnavailable
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.smc import SmcHint
from fxconnector.core.time_geom import DayGrid, Timeframe
from fxconnector.core.utils.json_codec import decode
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.publish.keys import SMC_HINTS_FIELD, SMC_STATE_FIELD, SurfaceKeys
from fxconnector.runtime.publish.redis_connect import SurfaceClient
from fxconnector.runtime.smc.state import SmcState, decode_state
from fxconnector.runtime.smc.window import HintWindow
from fxconnector.runtime.smc.writes import SMC_LUA, SmcWrites
from fxconnector.smc import SmcConfig, SmcEngine

log = logging.getLogger(__name__)

Series = tuple[str, Timeframe]
#: Finals of (symbol, tf) with `from_ms <= open_ms <= to_ms`, ascending (the SSOT).
FinalsSource = Callable[[str, Timeframe, int, int], Awaitable[list[OhlcvEvent]]]
#: Bars fed between two yields to the event loop during a re-warm (and, on a first start
#: over a long history, between two writes).
REWARM_SLICE: Final = 2_000
_END_MS: Final = 2**62


@dataclass(slots=True)
class SmcStats:
    """Counters of the live consumer (status, metrics, tests)."""

    bars_fed: int = 0
    hints_published: int = 0
    writes: int = 0
    late_finals: int = 0
    rewarm_short: int = 0
    malformed_snapshots: int = 0
    failures: int = 0
    last_error: str = ""


@dataclass(slots=True)
class _Series:
    window: HintWindow
    state: SmcState | None = None
    engine: SmcEngine | None = None
    pending: list[bytes] = field(default_factory=list)
    revisions: list[OhlcvEvent] = field(default_factory=list)
    unwritten: bool = False  # state or window changed since the last write


class SmcLive:
    """Feeds the engines of `series` from the surface and publishes their hints."""

    def __init__(
        self,
        redis: SurfaceClient,
        keys: SurfaceKeys,
        series: Sequence[Series],
        engine_config: SmcConfig,
        *,
        clock: Clock,
        retention_ms: int,
        snapshot_hints: int,
        book_bars: int,
        source: FinalsSource | None = None,
        grids: Mapping[str, DayGrid] | None = None,
        backoff: Backoff | None = None,
        block_ms: int = 1000,
        rng: random.Random | None = None,
    ) -> None:
        if not series:
            raise ValueError("the SMC consumer needs at least one (symbol, tf) series")
        self._redis = redis
        self._keys = keys
        self._engine_config = engine_config
        self._source = source
        self._grids = dict(grids or {})
        self._writes = SmcWrites(keys, retention_ms=retention_ms, clock=clock)
        self._backoff = backoff if backoff is not None else Backoff()
        self._block_ms = block_ms
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter only
        self._series: dict[Series, _Series] = {
            (symbol, Timeframe(tf)): _Series(HintWindow(snapshot_hints)) for symbol, tf in series
        }
        self._dirty: set[Series] = set()
        self._loaded = False
        self.consumer = SurfaceConsumer(
            redis,  # type: ignore[arg-type]  # a RedisCluster client works alike (client docs)
            keys,
            list(self._series),
            BarBook(max_bars=book_bars),
            on_change=self._on_change,
            on_reload=self._on_reload,
            backoff=self._backoff,
            finals_only=True,  # hints read final bars only; previews are most of the stream
        )
        self.stats = SmcStats()

    # --- what tests and status read ------------------------------------------------------------

    def state(self, symbol: str, tf: Timeframe) -> SmcState | None:
        return self._series[(symbol, tf)].state

    def idle(self) -> bool:
        """Nothing fed but unwritten, nothing new to feed that the book holds."""
        return not self._dirty and not any(s.pending or s.unwritten for s in self._series.values())

    # --- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, feed and publish until `stop` is set, riding out Redis outages."""
        failures = 0
        while not stop.is_set():
            try:
                await self.step(self._block_ms)
            except SurfaceUnavailable as exc:
                failures += 1
                self.stats.failures += 1
                self.stats.last_error = str(exc)[:500]
                delay_s = self._backoff.delay_s(failures, self._rng)
                log.warning(
                    "smc.surface_unavailable",
                    extra={"fields": {"failures": failures, "retry_in_s": delay_s}},
                )
                try:
                    async with asyncio.timeout(delay_s):
                        await stop.wait()
                except TimeoutError:
                    pass
                continue
            failures = 0

    async def step(self, block_ms: int = 0) -> None:
        """One round: load the snapshots (once), read the surface, feed, write."""
        if not self._loaded:
            await self._load()
        if not any(s.pending or s.unwritten for s in self._series.values()):
            await self.consumer.poll(block_ms)
        await self._feed()
        await self._write()

    # --- reading -------------------------------------------------------------------------------

    def _on_change(self, change: Change) -> None:
        event = change.event
        if not event.complete:
            return
        key = (event.symbol, event.tf)
        series = self._series.get(key)
        if series is None:
            return
        if series.state is not None and event.open_ms <= series.state.last_open_ms:
            # Read again after a resync (fed already) or a repaired gap: not fed. A revision
            # goes to the running engine, which re-derives from it (rules).
            if change.kind is not ChangeKind.REVISED or series.engine is None:
                return
            series.revisions.append(event)
        self._dirty.add(key)

    def _on_reload(self, symbol: str, tf: Timeframe) -> None:
        self._dirty.add((symbol, tf))

    async def _load(self) -> None:
        """Read every series' SMC snapshot (its state and kept hints) and load the script."""
        keys = list(self._series)
        try:
            await self._redis.script_load(SMC_LUA)
            async with self._redis.pipeline(transaction=False) as pipe:
                for symbol, tf in keys:
                    pipe.hgetall(self._keys.smc_snapshot(symbol, tf))
                replies: list[Any] = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise SurfaceUnavailable(f"redis SMC snapshots: {type(exc).__name__}: {exc}") from exc
        for key, reply in zip(keys, replies, strict=True):
            try:
                loaded = _parse_snapshot(reply)
            except ContractViolation as exc:
                self.stats.malformed_snapshots += 1
                log.warning(
                    "smc.malformed_snapshot",
                    extra={"fields": {"series": f"{key[0]} {key[1].value}", "error": str(exc)}},
                )
                loaded = None
            series = self._series[key]
            if loaded is not None:
                series.state, hints = loaded
                series.window.add(hints)
        self._loaded = True

    # --- feeding -------------------------------------------------------------------------------

    async def _feed(self) -> None:
        for key in sorted(self._dirty, key=lambda k: (k[0], k[1].ms)):
            self._dirty.discard(key)
            series = self._series[key]
            finals = self.consumer.book.finals(*key)
            if series.engine is None:
                await self._start(key, series, finals)
                continue
            assert series.state is not None
            self._revise(key, series)
            last = series.state.last_open_ms
            fresh: list[OhlcvEvent] = []
            for bar in reversed(finals):
                if bar.open_ms <= last:
                    break
                fresh.append(bar)
            fresh.reverse()
            self._publish_bars(series, fresh)

    async def _start(self, key: Series, series: _Series, finals: list[OhlcvEvent]) -> None:
        """A fresh engine for the series: from the book's oldest final, or re-warmed (rules)."""
        engine = SmcEngine(key[0], key[1], self._engine_config, grid=self._grids.get(key[0]))
        state = series.state
        if state is None:
            bars = finals
            if self._source is not None:
                # The SSOT's whole series first: the origin is its first final, as for the
                # store run (`fxconnector smc --store`), so both give the same hints.
                to_ms = finals[0].open_ms - 1 if finals else _END_MS
                earlier = await self._source(key[0], key[1], 0, to_ms)
                bars = earlier + finals
            if not bars:
                return  # nothing published yet: the first final starts the series
            series.engine = engine
            writing = True
            for start in range(0, len(bars), REWARM_SLICE):
                chunk = bars[start : start + REWARM_SLICE]
                self._publish_bars(series, chunk, origin_ms=bars[0].open_ms)
                if not writing:
                    await asyncio.sleep(0)
                    continue
                try:
                    await self._write()  # a long history goes out in bounded atomic steps
                except SurfaceUnavailable:
                    writing = False  # every bar is still fed: the rest goes out with `step`
            return
        bars = finals
        first = finals[0].open_ms if finals else None
        if self._source is not None and (first is None or first > state.origin_ms):
            to_ms = first - 1 if first is not None else state.last_open_ms
            earlier = await self._source(key[0], key[1], state.origin_ms, to_ms)
            bars = [bar for bar in earlier if first is None or bar.open_ms < first] + finals
        known = [bar for bar in bars if state.origin_ms <= bar.open_ms <= state.last_open_ms]
        if len(known) != state.bars:
            self.stats.rewarm_short += 1
            log.warning(
                "smc.rewarm_short",
                extra={
                    "fields": {
                        "series": f"{key[0]} {key[1].value}",
                        "expected_bars": state.bars,
                        "found_bars": len(known),
                    }
                },
            )
        for start in range(0, len(known), REWARM_SLICE):
            for bar in known[start : start + REWARM_SLICE]:
                engine.update(bar)  # published already: the hints are dropped
            await asyncio.sleep(0)
        series.engine = engine
        self._publish_bars(series, [bar for bar in bars if bar.open_ms > state.last_open_ms])

    def _revise(self, key: Series, series: _Series) -> None:
        """Feed the queued revisions of already fed bars; queue the re-derived hints."""
        engine = series.engine
        assert engine is not None
        revised, series.revisions = series.revisions, []
        for bar in revised:
            try:
                hints = engine.update(bar)
            except RevisionTooOld as exc:
                self.stats.late_finals += 1
                log.warning(
                    "smc.revision_too_old",
                    extra={"fields": {"series": f"{key[0]} {key[1].value}", "error": str(exc)}},
                )
                continue
            if hints:
                series.pending.extend(series.window.add(hints))
                series.unwritten = True

    def _publish_bars(
        self, series: _Series, bars: Sequence[OhlcvEvent], *, origin_ms: int | None = None
    ) -> None:
        """Feed `bars` (new finals, ascending) and queue their hints and the new state."""
        if not bars:
            return
        engine = series.engine
        assert engine is not None
        state = series.state
        origin = state.origin_ms if state is not None else origin_ms
        count = state.bars if state is not None else 0
        assert origin is not None
        hints: list[SmcHint] = []
        for bar in bars:
            hints.extend(engine.update(bar))
        self.stats.bars_fed += len(bars)
        series.pending.extend(series.window.add(hints))
        seq = state.seq if state is not None else 0
        series.state = SmcState(origin, bars[-1].open_ms, count + len(bars), seq)
        series.unwritten = True

    # --- writing -------------------------------------------------------------------------------

    async def _write(self) -> None:
        chosen = [(key, s) for key, s in self._series.items() if s.pending or s.unwritten]
        if not chosen:
            return
        try:
            await self._write_once(chosen)
        except NoScriptError:
            # A restarted Redis lost its script cache: load it and write again.
            try:
                await self._redis.script_load(SMC_LUA)
                await self._write_once(chosen)
            except (RedisError, OSError) as exc:
                raise SurfaceUnavailable(f"redis SMC write: {type(exc).__name__}: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise SurfaceUnavailable(f"redis SMC write: {type(exc).__name__}: {exc}") from exc
        for _, series in chosen:
            self.stats.hints_published += len(series.pending)
            series.pending = []
            series.unwritten = False
        self.stats.writes += 1

    async def _write_once(self, chosen: list[tuple[Series, _Series]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for (symbol, tf), series in chosen:
                assert series.state is not None
                state = msgspec.structs.replace(series.state, seq=series.state.seq + 1)
                self._writes.series(
                    pipe, symbol, tf, series.pending, series.window.encoded(), state
                )
            await pipe.execute()
        for _, series in chosen:
            assert series.state is not None
            series.state = msgspec.structs.replace(series.state, seq=series.state.seq + 1)


def _field(fields: dict[Any, Any], name: str) -> Any:
    value = fields.get(name.encode())
    return fields.get(name) if value is None else value


def _parse_snapshot(reply: Any) -> tuple[SmcState, list[SmcHint]] | None:
    """The state and kept hints of one SMC snapshot hash; None when there is none."""
    if not reply:
        return None
    raw_state = _field(reply, SMC_STATE_FIELD)
    raw_hints = _field(reply, SMC_HINTS_FIELD)
    if raw_state is None or raw_hints is None:
        raise ContractViolation(f"SMC snapshot lacks `{SMC_STATE_FIELD}` or `{SMC_HINTS_FIELD}`")
    state = decode_state(raw_state)
    try:
        hints = decode(raw_hints, list[SmcHint])
    except msgspec.DecodeError as exc:
        raise ContractViolation(f"SMC snapshot hints: {exc}") from exc
    return state, hints
