"""The merge policy every consumer applies to bar update events (DESIGN §3), as a pure book.

Rules, per series `(symbol, tf)` and key `open_ms`:
- final > preview. A final replaces a preview of its key (`replaced`).
- NoMix: once a key has a final, no preview changes it (`ignored`, `no_mix`).
- A final with a higher `rev` replaces the final of its key (`revised`); the same rev is a
  duplicate (`duplicate`, or `conflict` when its content differs, which is a producer bug), a
  lower rev is stale out-of-order delivery (`stale_revision`). So finals converge to the highest
  rev per key whatever the delivery order, and applying an event twice changes nothing.
- A preview replaces the preview of its key only when it is newer in the data's own terms: its
  latest tick (`event_ts`) is not older and it counts no fewer ticks (`tick_count`), and one of
  the two has grown. One producer's publishes of a bucket only ever grow in both, so this is
  their order. A preview that is older is stale (`stale_preview`); one with a later tick but
  fewer ticks than the held one (`thinner_preview`) comes from a producer that restarted inside
  the bucket and has seen only the ticks since its start: it must not collapse the fuller bar a
  consumer already shows (O=H=L=C, V=1 after a server restart). It replaces it once it has
  caught up in ticks; the bucket's final replaces either.
- A preview for a bucket older than the newest final of its series is late: that bucket has
  closed, so it is ignored (`late_preview`) even when the key holds no final. A preview for a
  newer bucket is inserted. A preview already held for an older bucket stays until its final
  arrives: it is still the best view of that bucket.
- `load_snapshot` replaces a series' finals with the snapshot's; of the held previews it keeps
  exactly those the policy would accept on top of the snapshot (buckets newer than the
  snapshot's newest final, i.e. the bar still being built), so nothing stale survives.
- `max_bars` (optional) keeps memory bounded: past it the oldest bars are dropped, and an event
  for a key older than every bar kept is ignored (`out_of_window`).

Pure: no I/O, no clock, no asyncio. The same rules, with the same test vectors
(`tests/vectors/merge/`), drive the JavaScript chart.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from fxconnector.core.errors import ContractViolation
from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.time_geom import Timeframe

SeriesKey = tuple[str, Timeframe]


class ChangeKind(StrEnum):
    """What applying one event did to the book."""

    INSERTED = "inserted"  # a key the series did not hold
    REPLACED = "replaced"  # a preview replaced by a newer preview or by the key's final
    REVISED = "revised"  # a final replaced by a final with a higher rev
    IGNORED = "ignored"  # nothing changed; `reason` says why


class IgnoreReason(StrEnum):
    """Why an event left the book unchanged."""

    NO_MIX = "no_mix"  # a preview for a key that has a final
    LATE_PREVIEW = "late_preview"  # a preview for a bucket older than the series' newest final
    STALE_PREVIEW = "stale_preview"  # a preview not newer than the preview held for its key
    THINNER_PREVIEW = "thinner_preview"  # a later preview with fewer ticks (a restarted producer)
    DUPLICATE = "duplicate"  # a final equal to the one held
    CONFLICT = "conflict"  # a final with the held rev but other content (a producer bug)
    STALE_REVISION = "stale_revision"  # a final with a lower rev than the one held
    OUT_OF_WINDOW = "out_of_window"  # older than every bar kept under `max_bars`


@dataclass(frozen=True, slots=True)
class Change:
    """The outcome of `BarBook.apply`: the event, what it did and the bar held before."""

    kind: ChangeKind
    event: OhlcvEvent
    previous: OhlcvEvent | None = None
    reason: IgnoreReason | None = None

    @property
    def changed(self) -> bool:
        return self.kind is not ChangeKind.IGNORED


class _Series:
    """One series: bars by open_ms, their keys in ascending order, the newest final's open."""

    __slots__ = ("by_open", "newest_final_ms", "opens")

    def __init__(self) -> None:
        self.by_open: dict[int, OhlcvEvent] = {}
        self.opens: list[int] = []
        self.newest_final_ms: int | None = None

    def put(self, bar: OhlcvEvent) -> None:
        if bar.open_ms not in self.by_open:
            # Live bars arrive at the end, so this is an append almost always.
            if not self.opens or bar.open_ms > self.opens[-1]:
                self.opens.append(bar.open_ms)
            else:
                bisect.insort(self.opens, bar.open_ms)
        self.by_open[bar.open_ms] = bar
        if bar.complete and (self.newest_final_ms is None or bar.open_ms > self.newest_final_ms):
            self.newest_final_ms = bar.open_ms

    def trim(self, max_bars: int) -> None:
        excess = len(self.opens) - max_bars
        if excess > 0:
            for open_ms in self.opens[:excess]:
                del self.by_open[open_ms]
            del self.opens[:excess]

    def ordered(self) -> list[OhlcvEvent]:
        return [self.by_open[open_ms] for open_ms in self.opens]


def _preview_order(candidate: OhlcvEvent, held: OhlcvEvent) -> IgnoreReason | None:
    """None when `candidate` is a newer preview of the key than `held`, else why it is not."""
    # Previews carry the time of their latest tick (the builder keeps the maximum) and their tick
    # count; a producer's publishes of one bucket grow in both, ticks sharing a millisecond grow
    # tick_count alone.
    if (candidate.event_ts, candidate.tick_count) <= (held.event_ts, held.tick_count):
        return IgnoreReason.STALE_PREVIEW
    if candidate.tick_count < held.tick_count:
        return IgnoreReason.THINNER_PREVIEW
    return None


class BarBook:
    """Bars per (symbol, tf), keyed by open_ms, merged by the policy in the module docstring."""

    def __init__(self, *, max_bars: int | None = None) -> None:
        if max_bars is not None and max_bars < 1:
            raise ValueError(f"max_bars must be at least 1, got {max_bars}")
        self._max_bars = max_bars
        self._series: dict[SeriesKey, _Series] = {}

    def apply(self, event: OhlcvEvent) -> Change:
        """Merge one event into its series and say what happened."""
        series = self._series.setdefault((event.symbol, event.tf), _Series())
        held = series.by_open.get(event.open_ms)
        if held is None:
            if (
                self._max_bars is not None
                and len(series.opens) >= self._max_bars
                and event.open_ms < series.opens[0]
            ):
                return Change(ChangeKind.IGNORED, event, None, IgnoreReason.OUT_OF_WINDOW)
            if (
                not event.complete
                and series.newest_final_ms is not None
                and event.open_ms < series.newest_final_ms
            ):
                return Change(ChangeKind.IGNORED, event, None, IgnoreReason.LATE_PREVIEW)
            series.put(event)
            if self._max_bars is not None:
                series.trim(self._max_bars)
            return Change(ChangeKind.INSERTED, event)
        reason = self._ignore_reason(event, held, series)
        if reason is not None:
            return Change(ChangeKind.IGNORED, event, held, reason)
        series.put(event)
        kind = ChangeKind.REVISED if held.complete else ChangeKind.REPLACED
        return Change(kind, event, held)

    @staticmethod
    def _ignore_reason(event: OhlcvEvent, held: OhlcvEvent, series: _Series) -> IgnoreReason | None:
        """Why `event` must not replace `held` (same key), or None when it replaces it."""
        if event.complete:
            if not held.complete or event.rev > held.rev:
                return None
            if event.rev < held.rev:
                return IgnoreReason.STALE_REVISION
            return IgnoreReason.DUPLICATE if event == held else IgnoreReason.CONFLICT
        if held.complete:
            return IgnoreReason.NO_MIX
        if series.newest_final_ms is not None and event.open_ms < series.newest_final_ms:
            return IgnoreReason.LATE_PREVIEW
        return _preview_order(event, held)

    def load_snapshot(self, symbol: str, tf: Timeframe, bars: Iterable[OhlcvEvent]) -> None:
        """Replace the series' finals with a snapshot of final bars (any order; highest rev wins).

        Held previews survive only for buckets newer than the snapshot's newest final (all of
        them when the snapshot is empty): exactly the ones `apply` would still accept. Raises
        ContractViolation when a bar is not a final of this series.
        """
        fresh = _Series()
        finals: dict[int, OhlcvEvent] = {}
        for bar in bars:
            if bar.symbol != symbol or bar.tf != tf or not bar.complete:
                raise ContractViolation(
                    f"snapshot of {symbol} {tf.value} holds a bar that is not one of its finals: "
                    f"{bar.symbol} {bar.tf.value} open_ms={bar.open_ms} complete={bar.complete}"
                )
            known = finals.get(bar.open_ms)
            if known is None or bar.rev > known.rev:
                finals[bar.open_ms] = bar
        for open_ms in sorted(finals):
            fresh.put(finals[open_ms])
        old = self._series.get((symbol, tf))
        if old is not None:
            for open_ms in old.opens:
                bar = old.by_open[open_ms]
                if not bar.complete and (
                    fresh.newest_final_ms is None or open_ms > fresh.newest_final_ms
                ):
                    fresh.put(bar)
        if self._max_bars is not None:
            fresh.trim(self._max_bars)
        self._series[(symbol, tf)] = fresh

    def bars(self, symbol: str, tf: Timeframe) -> list[OhlcvEvent]:
        """Every bar held for the series (finals and previews), ascending open_ms."""
        series = self._series.get((symbol, tf))
        return series.ordered() if series is not None else []

    def finals(self, symbol: str, tf: Timeframe) -> list[OhlcvEvent]:
        """The final bars held for the series, ascending open_ms."""
        return [bar for bar in self.bars(symbol, tf) if bar.complete]

    def get(self, symbol: str, tf: Timeframe, open_ms: int) -> OhlcvEvent | None:
        """The bar held for one key, if any."""
        series = self._series.get((symbol, tf))
        return series.by_open.get(open_ms) if series is not None else None

    def newest_final_ms(self, symbol: str, tf: Timeframe) -> int | None:
        """open_ms of the series' newest final (previews of older buckets are late)."""
        series = self._series.get((symbol, tf))
        return series.newest_final_ms if series is not None else None

    def series(self) -> list[SeriesKey]:
        """The series the book holds, in the order first seen."""
        return list(self._series)
