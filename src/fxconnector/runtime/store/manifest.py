"""The store manifest: what a store is, written into its folder when the store is created.

Layout: `<store>/manifest.json` for JSONL and SQLite stores alike (both stores are folders),
indented canonical JSON, replaced atomically (temp file, fsync, rename, fsync the folder).

Rules:
- The manifest names everything that decides what a stored bar means: the calendar profile (its
  name, the digest of its rules and the trading-day start that places 4h/1d buckets), the
  timeframes, the price side, the open mode, the volume mode, the symbols, the store kind, the
  format version and the fxconnector version that created it. Unknown keys are rejected on read.
- Every reader and writer takes these settings from the manifest. A writer states what it wants
  (`StoreManifest`); `settle` (called by the store's `open()`, under the writer lock) creates the
  manifest in an empty store, accepts an equal one, and refuses any other with a ConfigError
  naming both values and the way out. Compatible differences are recorded, never refused:
  new symbols (the list grows) and a calendar whose rules changed while its trading-day grid
  did not (new holidays: the digest is updated and a warning logged).
- A store that holds bars but no manifest was written before manifests existed: it is refused
  (`LegacyStore`) with the command that infers, verifies and writes one (`upgrade.py`).
- `GridCheck` is the store's own guard at append: a bar of a timeframe or symbol the manifest
  does not list, or whose `open_ms` is not a bucket open of its timeframe on the manifest's
  calendar, is refused (ContractViolation) before anything of its batch is written.
This module knows no file layout beyond `manifest.json`: the stores call it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec
import numpy as np

from fxconnector import __version__
from fxconnector.config.calendars import load_calendar, profile_digest, profile_names
from fxconnector.core.buckets import bucket_open, bucket_open_array, bucket_opener
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.errors import ConfigError, ContractViolation, StoreCorrupt, StoreError
from fxconnector.core.model.bar import SYMBOL_PATTERN, OhlcvEvent
from fxconnector.core.time_geom import I64Array, Timeframe, iso_utc

log = logging.getLogger(__name__)

MANIFEST_NAME: Final = "manifest.json"
#: Version of the store layout and line format; a newer one is refused, never guessed at.
FORMAT_VERSION: Final = 1
CREATED_BY: Final = f"fxconnector {__version__}"

StoreKind = Literal["jsonl", "sqlite"]
Origin = Literal["run", "replay", "import", "migrate", "upgrade"]
Symbol = Annotated[str, msgspec.Meta(pattern=SYMBOL_PATTERN)]


class StoreManifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a store is. `origin` says which command created it (replay writes only into its
    own stores unless told otherwise)."""

    format_version: int
    store_kind: StoreKind
    calendar: str
    calendar_digest: str
    #: Where trading days start ("America/New_York 17:00"): the grid of 4h and 1d buckets.
    trading_day: str
    timeframes: tuple[Timeframe, ...]
    price: Literal["bid", "ask", "mid"]
    open_mode: Literal["first_tick", "previous_close"]
    volume: Literal["ticks", "size"]
    symbols: tuple[Symbol, ...]
    created_by: str
    origin: Origin


#: The settings that must be equal, with the config key that sets each (for messages).
SETTINGS: Final = (
    ("store_kind", "store.kind"),
    ("calendar", "calendar.profile"),
    ("trading_day", "the calendar's trading-day start"),
    ("timeframes", "bars.timeframes"),
    ("price", "bars.price"),
    ("open_mode", "bars.open_mode"),
    ("volume", "bars.volume"),
)

_DECODER: Final = msgspec.json.Decoder(StoreManifest)


class LegacyStore(ConfigError):
    """A store with bars but no manifest (written before manifests existed)."""


def trading_day_of(profile: CalendarProfile) -> str:
    """The trading-day start of a profile as the manifest records it."""
    minute = profile.day_grid.start_minute
    return f"{profile.day_grid.zone} {minute // 60:02d}:{minute % 60:02d}"


def describe(manifest: StoreManifest) -> str:
    """One line for people: the settings of a store."""
    return (
        f"kind={manifest.store_kind} calendar={manifest.calendar} "
        f"timeframes={','.join(tf.value for tf in manifest.timeframes)} price={manifest.price} "
        f"open_mode={manifest.open_mode} volume={manifest.volume} "
        f"symbols={','.join(manifest.symbols)}"
    )


def path_of(root: Path) -> Path:
    return root / MANIFEST_NAME


def read_manifest(root: Path) -> StoreManifest | None:
    """The manifest of the store at `root`, or None when it has none. StoreCorrupt when the file
    is not a manifest (unknown or missing keys included); StoreError when it is from a newer
    fxconnector."""
    path = path_of(root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None
    try:
        manifest = _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StoreCorrupt(f"{path}: not a store manifest: {exc}") from None
    if manifest.format_version > FORMAT_VERSION:
        raise StoreError(
            f"{path}: store format {manifest.format_version} is newer than this fxconnector "
            f"reads ({FORMAT_VERSION}); upgrade fxconnector"
        )
    return manifest


def write_manifest(root: Path, manifest: StoreManifest) -> None:
    """Write (or replace) the manifest atomically and durably."""
    path = path_of(root)
    data = msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"
    temp = path.with_name(path.name + ".tmp")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with temp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temp.replace(path)
        dir_fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from None


def wanted(
    *,
    store_kind: StoreKind,
    calendar: str,
    profile: CalendarProfile,
    calendar_file: Path | None = None,
    timeframes: Sequence[Timeframe],
    price: str,
    open_mode: str,
    volume: str,
    symbols: Sequence[str],
    origin: Origin,
) -> StoreManifest:
    """The manifest a writer with these settings wants (validated like a read one)."""
    raw = {
        "format_version": FORMAT_VERSION,
        "store_kind": store_kind,
        "calendar": calendar,
        "calendar_digest": profile_digest(calendar, calendar_file),
        "trading_day": trading_day_of(profile),
        "timeframes": [tf.value for tf in sorted(set(timeframes), key=lambda tf: tf.ms)],
        "price": price,
        "open_mode": open_mode,
        "volume": volume,
        "symbols": sorted(set(symbols)),
        "created_by": CREATED_BY,
        "origin": origin,
    }
    try:
        return msgspec.convert(raw, type=StoreManifest)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"store settings: {exc}") from None


def conflicts(found: StoreManifest, want: StoreManifest) -> list[tuple[str, str, str]]:
    """(config key, the store's value, the wanted value) for each setting that differs."""
    out = []
    for name, key in SETTINGS:
        mine, theirs = getattr(found, name), getattr(want, name)
        if mine != theirs:
            out.append((key, _show(mine), _show(theirs)))
    return out


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(getattr(item, "value", item)) for item in value)
    return str(value)


def mismatch_error(
    root: Path, found: StoreManifest, want: StoreManifest, asked_by: str = "the config"
) -> ConfigError | None:
    """The refusal when `want` cannot use the store `found` describes, or None."""
    differing = conflicts(found, want)
    if not differing:
        return None
    named = "; ".join(
        f"{key} is {mine} in the store, {theirs} in {asked_by}" for key, mine, theirs in differing
    )
    if [key for key, _, _ in differing] == ["store.kind"]:
        way_out = (
            f"set store.kind = {found.store_kind!r}, or copy the store into a new one with "
            f"`fxconnector migrate --store {root} --to NEW_DIR --to-kind {want.store_kind}`"
        )
    else:
        way_out = (
            "run with the store's settings, or give this config a new store (another --workdir "
            "or [store] path) and fill it with `fxconnector cmd warmup`/`backfill` (bars built "
            "on other settings cannot be converted)"
        )
    return ConfigError(f"store {root} ({path_of(root).name}) does not match: {named}. {way_out}")


def upgrade_command(root: Path) -> str:
    return f"fxconnector migrate --store {root} --write-manifest"


def legacy_error(root: Path) -> LegacyStore:
    return LegacyStore(
        f"store {root} holds bars but no {MANIFEST_NAME} (it was written before stores "
        f"described themselves): run `{upgrade_command(root)}` to infer its calendar and "
        "settings from its bars, verify every bar against them and write the manifest "
        "(add --calendar NAME when the bars cannot tell)"
    )


def settle(
    root: Path, want: StoreManifest, *, empty: bool, asked_by: str = "the config"
) -> StoreManifest:
    """Under the writer lock: create, accept or refuse the store's manifest; the one in force."""
    found = read_manifest(root)
    if found is None:
        if not empty:
            raise legacy_error(root)
        write_manifest(root, want)
        return want
    error = mismatch_error(root, found, want, asked_by)
    if error is not None:
        raise error
    merged = found
    added = sorted(set(want.symbols) - set(found.symbols))
    if added:
        merged = msgspec.structs.replace(
            merged, symbols=tuple(sorted({*found.symbols, *want.symbols}))
        )
        log.info("store %s: symbols %s added to %s", root, ",".join(added), MANIFEST_NAME)
    if found.calendar_digest != want.calendar_digest:
        # Same name and trading-day grid (checked above): only closures changed (holidays).
        merged = msgspec.structs.replace(merged, calendar_digest=want.calendar_digest)
        log.warning(
            "store %s: calendar %s rules changed (digest %s -> %s), same trading-day grid; "
            "recorded in %s",
            root,
            found.calendar,
            found.calendar_digest,
            want.calendar_digest,
            MANIFEST_NAME,
        )
    if merged != found:
        write_manifest(root, merged)
    return merged


def check_flag(root: Path, flag: str, given: object, recorded: object) -> None:
    """ConfigError when an explicit flag contradicts the manifest (None: not given)."""
    if given is not None and _show(given) != _show(recorded):
        raise ConfigError(
            f"{flag} {_show(given)} contradicts store {root}: its {MANIFEST_NAME} says "
            f"{_show(recorded)}; leave {flag} out (the manifest's value is used)"
        )


def load_profile(manifest: StoreManifest, root: Path, *, now_ms: int) -> CalendarProfile:
    """The calendar a store was built on, checked to still have the store's trading-day grid."""
    if manifest.calendar not in profile_names():
        raise ConfigError(
            f"store {root} was built on calendar {manifest.calendar!r}, which is not a built-in "
            f"profile (known: {', '.join(profile_names())})"
        )
    profile = load_calendar(manifest.calendar, now_ms=now_ms)
    day = trading_day_of(profile)
    if day != manifest.trading_day:
        raise ConfigError(
            f"store {root}: calendar {manifest.calendar} now starts trading days at {day}, the "
            f"store's bars are on {manifest.trading_day}; its 4h/1d bars would not match"
        )
    return profile


@dataclass(frozen=True, slots=True)
class StoreIdentity:
    """What a writer wants the store to be, and the calendar that places its buckets."""

    manifest: StoreManifest
    calendar: CalendarProfile
    #: Who wants these settings, for refusals ("the config", "the replay's flags").
    asked_by: str = "the config"


def open_guard(root: Path, identity: StoreIdentity | None, *, empty: bool) -> GridCheck | None:
    """Called by a store's `open()` under its writer lock, after loading: settle the manifest
    `identity` wants, or read the one on disk; the append guard (None: a bare store opened
    without identity and holding no manifest, as unit tests use)."""
    if identity is not None:
        manifest = settle(root, identity.manifest, empty=empty, asked_by=identity.asked_by)
        return GridCheck(root, manifest, identity.calendar)
    found = read_manifest(root)
    if found is None:
        return None
    return GridCheck(root, found, load_profile(found, root, now_ms=time.time_ns() // 1_000_000))


class GridCheck:
    """Refuses bars the manifest does not describe: one bucket computation per bar."""

    __slots__ = ("_calendar", "_name", "_openers", "_root", "_symbols", "_timeframes", "manifest")

    def __init__(self, root: Path, manifest: StoreManifest, calendar: CalendarProfile) -> None:
        self.manifest = manifest
        self._root = root
        self._name = manifest.calendar
        self._calendar = calendar
        self._symbols = frozenset(manifest.symbols)
        self._timeframes = frozenset(manifest.timeframes)
        self._openers = {tf: bucket_opener(tf, calendar) for tf in manifest.timeframes}

    def check(self, bars: Sequence[OhlcvEvent]) -> None:
        """ContractViolation naming the first bar that is not on the store's grid."""
        openers, symbols = self._openers, self._symbols
        for bar in bars:
            opener = openers.get(bar.tf)
            if opener is None or bar.symbol not in symbols or opener(bar.open_ms) != bar.open_ms:
                raise ContractViolation(self._explain(bar))

    def check_opens(self, bars: Sequence[OhlcvEvent], opens: I64Array) -> None:
        """`check` of one series' bars whose open_ms column is `opens`, a column at a time."""
        if not bars:
            return
        first = bars[0]
        if first.tf not in self._timeframes or first.symbol not in self._symbols:
            raise ContractViolation(self._explain(first))
        off = np.flatnonzero(bucket_open_array(opens, first.tf, self._calendar) != opens)
        if off.size:
            raise ContractViolation(self._explain(bars[int(off[0])]))

    def _explain(self, bar: OhlcvEvent) -> str:
        where = f"store {self._root} refuses {bar.symbol} {bar.tf.value} {bar.open_ms}"
        if bar.tf not in self._timeframes:
            listed = ",".join(tf.value for tf in sorted(self._timeframes, key=lambda t: t.ms))
            return f"{where}: timeframe {bar.tf.value} is not in its manifest ({listed})"
        if bar.symbol not in self._symbols:
            return f"{where}: symbol {bar.symbol} is not in its manifest"
        expected = bucket_open(bar.open_ms, bar.tf, self._calendar)
        return (
            f"{where} ({iso_utc(bar.open_ms)}): not a {bar.tf.value} bucket open on its "
            f"calendar {self._name} (that bucket opens at {iso_utc(expected)})"
        )
