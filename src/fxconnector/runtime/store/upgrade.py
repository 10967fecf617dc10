"""Giving a store written before manifests existed its manifest: infer, verify, then write.

Rules:
- Only a store without a manifest is upgraded; the caller has opened it bare (no identity,
  holding the writer lock), so recovery ran as on any start and nothing else writes meanwhile.
- The calendar is inferred from the bars: a built-in profile is a candidate when every stored
  bar (latest revisions, every timeframe) is a bucket open on its grid. Profiles sharing a grid
  (always_open and utc_00 both start days at 00:00 UTC) are told apart by 1m bars in time one of
  them calls closed. Exactly one candidate left is the answer; several are ambiguous and none is
  a contradiction: both are refused (`UpgradeRefused`) naming the candidates or the first
  off-grid bar, and a `calendar` given by the operator is verified the same way, never trusted.
- Timeframes and symbols are read from the store. The volume mode is verified where bars show
  it (`ticks` means volume == tick_count on every 1m bar). Price side and open mode cannot be
  seen in bars: they are the operator's word (defaults bid/first_tick) and reported as assumed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fxconnector.config.calendars import load_calendar, profile_names
from fxconnector.core.buckets import bucket_open_array
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.errors import ConfigError
from fxconnector.core.time_geom import Timeframe, iso_utc
from fxconnector.runtime.store import manifest
from fxconnector.runtime.store.audit_sources import stored_symbols
from fxconnector.runtime.store.manifest import StoreKind, StoreManifest
from fxconnector.runtime.store.port import FinalStore


class UpgradeRefused(ConfigError):
    """The bars do not let the manifest be inferred or verified."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What the operator says (None: infer, or the default)."""

    calendar: str | None = None
    timeframes: tuple[Timeframe, ...] | None = None
    price: str | None = None
    open_mode: str | None = None
    volume: str | None = None


@dataclass(slots=True)
class UpgradeReport:
    manifest: StoreManifest
    bars_checked: int
    #: setting -> how it was found: inferred (from the bars), verified (given, checked against
    #: every bar), read (from the store's files), given (not checkable), assumed (a default).
    how: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Fit:
    name: str
    profile: CalendarProfile
    off_grid: str | None = None  # the first bar off this profile's grid
    closed_1m: int = 0  # 1m bars in time this profile calls closed


def infer_manifest(
    store: FinalStore,
    root: Path,
    kind: StoreKind,
    settings: Settings,
    *,
    now_ms: int,
    progress: Callable[[int, int], None] | None = None,
    load: Callable[[str], CalendarProfile] | None = None,
) -> UpgradeReport:
    """The verified manifest of the open, manifest-less `store` (nothing is written).

    `load` loads a built-in profile by name (default: `load_calendar` at `now_ms`)."""
    series = store.series()
    symbols = stored_symbols(store)
    if not series:
        raise UpgradeRefused(
            f"store {root} holds no bars: nothing to infer from; it gets its manifest when a "
            "connector first opens it"
        )
    names = profile_names()
    if settings.calendar is not None and settings.calendar not in names:
        raise UpgradeRefused(
            f"--calendar: unknown profile {settings.calendar!r} (known: {', '.join(names)})"
        )
    loader = load or (lambda name: load_calendar(name, now_ms=now_ms))
    fits = [_Fit(name, loader(name)) for name in names]
    checked = 0
    volume_is_ticks = True
    for done, (symbol, tf) in enumerate(series):
        bars = list(store.bars(symbol, tf))
        checked += len(bars)
        opens = np.fromiter((bar.open_ms for bar in bars), np.int64, len(bars))
        for fit in fits:
            _check(fit, symbol, tf, opens)
        if tf is Timeframe.M1:
            volume_is_ticks = volume_is_ticks and all(b.volume == b.tick_count for b in bars)
        if progress is not None:
            progress(done + 1, len(series))
    fit = _choose(fits, settings.calendar, root)
    how = {"calendar": "verified" if settings.calendar else "inferred"}
    present = {tf for _, tf in series}
    timeframes = set(settings.timeframes or ()) | present | {Timeframe.M1}
    if settings.timeframes is not None and not present <= set(settings.timeframes):
        extra = ",".join(tf.value for tf in sorted(present - set(settings.timeframes)))
        raise UpgradeRefused(f"--timeframes leaves out {extra}, which the store holds")
    how["timeframes"] = "given" if settings.timeframes else "read"
    volume = settings.volume or ("ticks" if volume_is_ticks else "size")
    if volume == "ticks" and not volume_is_ticks:
        raise UpgradeRefused(
            "--volume ticks contradicts the store: some 1m bars have volume != tick_count"
        )
    how["volume"] = "verified" if settings.volume else "inferred"
    how["price"] = "given" if settings.price else "assumed"  # not visible in bars
    how["open_mode"] = "given" if settings.open_mode else "assumed"
    made = manifest.wanted(
        store_kind=kind,
        calendar=fit.name,
        profile=fit.profile,
        timeframes=sorted(timeframes, key=lambda tf: tf.ms),
        price=settings.price or "bid",
        open_mode=settings.open_mode or "first_tick",
        volume=volume,
        symbols=symbols,
        origin="upgrade",
    )
    return UpgradeReport(made, checked, how)


def _check(fit: _Fit, symbol: str, tf: Timeframe, opens: np.ndarray) -> None:
    if fit.off_grid is None and opens.size:
        wrong = np.flatnonzero(bucket_open_array(opens, tf, fit.profile) != opens)
        if wrong.size:
            at = int(opens[wrong[0]])
            fit.off_grid = (
                f"{symbol} {tf.value} bar at {iso_utc(at)} is not on its grid "
                f"({wrong.size} such {tf.value} bars)"
            )
    if tf is Timeframe.M1 and opens.size:
        fit.closed_1m += int(np.count_nonzero(~fit.profile.for_symbol(symbol).is_open_array(opens)))


def _choose(fits: list[_Fit], given: str | None, root: Path) -> _Fit:
    on_grid = [fit for fit in fits if fit.off_grid is None]
    if given is not None:
        (fit,) = [fit for fit in fits if fit.name == given]
        if fit.off_grid is not None:
            raise UpgradeRefused(
                f"store {root} contradicts calendar {given}: {fit.off_grid}; "
                f"profiles that fit every bar: {_names(on_grid)}"
            )
        return fit
    if not on_grid:
        detail = "; ".join(f"{fit.name}: {fit.off_grid}" for fit in fits)
        raise UpgradeRefused(f"store {root} fits no calendar profile: {detail}")
    open_fits = [fit for fit in on_grid if fit.closed_1m == 0]
    if len(on_grid) == 1:
        return on_grid[0]
    if len(open_fits) == 1:
        return open_fits[0]
    raise UpgradeRefused(
        f"store {root}: its bars fit several calendars ({_names(open_fits or on_grid)}); "
        "say which one with --calendar NAME (it is verified against every bar)"
    )


def _names(fits: list[_Fit]) -> str:
    return ", ".join(fit.name for fit in fits) or "none"
