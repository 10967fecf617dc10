"""Loading calendar profiles from `calendar_overrides.json` into core calendars.

Rules: a malformed profile is a ConfigError that names the profile and the key, never a silent
fallback. A profile is accepted only if every 4h and 1d bucket that contains trading time is
exactly `tf_ms` long for the next ten years (DESIGN §4); the error names the bucket's date.
Time zones are resolved here (zoneinfo), so the core stays free of file reads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from fxconnector.core.calendar import (
    CalendarProfile,
    CalendarSpec,
    ClosedInterval,
    DailyBreak,
    SymbolGroup,
    Weekday,
    WeeklyInstant,
    bucket_length_problems,
)
from fxconnector.core.errors import ConfigError
from fxconnector.core.time_geom import MINUTE_MS, RANGE_END_MS, RANGE_START_MS, to_ms

CHECK_YEARS = 10
_CLOCK = re.compile(r"^(?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d)$")

Clock = Annotated[str, msgspec.Meta(pattern=_CLOCK.pattern)]
WeekdayName = Annotated[
    str, msgspec.Meta(pattern="^(monday|tuesday|wednesday|thursday|friday|saturday|sunday)$")
]


class _Instant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    weekday: WeekdayName
    time: Clock


class _Week(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    open: _Instant
    close: _Instant


class _TradingDay(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    timezone: str
    start: Clock


class _Closed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    start: str
    end: str
    reason: str


class _Break(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    weekdays: list[WeekdayName]
    start: Clock
    end: Clock


class _Group(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    symbols: list[str]
    daily_breaks: list[_Break] = []


class _Profile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    description: str
    timezone: str
    week: _Week | None
    trading_day: _TradingDay
    closed_intervals_utc: list[_Closed]
    groups: dict[str, _Group]


class _Document(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: int
    profiles: dict[str, dict[str, Any]]


def builtin_profiles_path() -> Path:
    """Path of the profiles file shipped with the package."""
    return Path(str(resources.files("fxconnector.config").joinpath("calendar_overrides.json")))


def profile_names(path: Path | None = None) -> list[str]:
    """Names of the profiles in the file."""
    return sorted(_read_document(path or builtin_profiles_path()).profiles)


def profile_digest(name: str, path: Path | None = None) -> str:
    """sha256 of profile `name`'s rules: its resolved definition (`extends` applied, the
    `description` left out) as canonical JSON (sorted keys, no spaces)."""
    source = path or builtin_profiles_path()
    raw = _resolve(_read_document(source).profiles, name, source)
    raw.pop("description", None)
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def load_calendar(
    name: str, *, now_ms: int, path: Path | None = None, check_years: int = CHECK_YEARS
) -> CalendarProfile:
    """Load profile `name`, check its geometry from `now_ms` for `check_years`, and build it."""
    source = path or builtin_profiles_path()
    document = _read_document(source)
    raw = _resolve(document.profiles, name, source)
    try:
        profile = msgspec.convert(raw, type=_Profile)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"calendar profile {name!r} in {source}: {exc}") from None
    spec = _to_spec(name, profile)
    calendar = CalendarProfile(spec)
    end_ms = min(now_ms + check_years * 366 * 86_400_000, RANGE_END_MS - 1)
    for trading in calendar.calendars():
        problems = bucket_length_problems(trading, now_ms, end_ms)
        if problems:
            raise ConfigError(
                f"calendar profile {name!r} ({trading.tag}) breaks the bucket geometry: "
                + "; ".join(problems)
            )
    return calendar


def _read_document(path: Path) -> _Document:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read calendar profiles {path}: {exc.strerror}") from None
    try:
        return msgspec.json.decode(data, type=_Document)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"calendar profiles {path} are malformed: {exc}") from None


def _resolve(profiles: dict[str, dict[str, Any]], name: str, source: Path) -> dict[str, Any]:
    if name not in profiles:
        known = ", ".join(sorted(profiles))
        raise ConfigError(f"unknown calendar profile {name!r} (known in {source}: {known})")
    raw = dict(profiles[name])
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str) or parent == name:
        raise ConfigError(f"calendar profile {name!r}: 'extends' must name another profile")
    base = _resolve(profiles, parent, source)
    return {**base, **raw}


def _minute(text: str) -> int:
    match = _CLOCK.match(text)
    if match is None:  # pragma: no cover - the struct's pattern already rejected it
        raise ConfigError(f"bad clock time {text!r}")
    return int(match["h"]) * 60 + int(match["m"])


def _zone(profile: str, key: str, zone_name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"calendar profile {profile!r}: {key} {zone_name!r} is not a known IANA time zone"
        ) from None


def _utc_ms(profile: str, text: str) -> int:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"calendar profile {profile!r}: {text!r} is not an ISO-8601 time"
        ) from None
    if moment.tzinfo is None:
        raise ConfigError(f"calendar profile {profile!r}: {text!r} needs an explicit UTC offset")
    ts = to_ms(moment)
    if ts % MINUTE_MS or not RANGE_START_MS <= ts <= RANGE_END_MS:
        raise ConfigError(
            f"calendar profile {profile!r}: {text!r} must be a whole minute within 1970-2100"
        )
    return ts


def _to_spec(name: str, profile: _Profile) -> CalendarSpec:
    zone = _zone(name, "timezone", profile.timezone)
    closed = []
    for item in profile.closed_intervals_utc:
        start, end = _utc_ms(name, item.start), _utc_ms(name, item.end)
        if end <= start:
            raise ConfigError(
                f"calendar profile {name!r}: closed interval {item.reason!r} ends before it starts"
            )
        closed.append(ClosedInterval(start, end, item.reason))
    groups = []
    seen: dict[str, str] = {}
    for group_name, group in sorted(profile.groups.items()):
        for symbol in group.symbols:
            if symbol in seen:
                raise ConfigError(
                    f"calendar profile {name!r}: symbol {symbol} is in groups "
                    f"{seen[symbol]!r} and {group_name!r}"
                )
            seen[symbol] = group_name
        breaks = tuple(
            DailyBreak(
                frozenset(Weekday[w.upper()] for w in brk.weekdays),
                _minute(brk.start),
                _minute(brk.end),
            )
            for brk in group.daily_breaks
        )
        groups.append(SymbolGroup(group_name, frozenset(group.symbols), breaks))
    week_open = week_close = None
    if profile.week is not None:
        week_open = WeeklyInstant(
            Weekday[profile.week.open.weekday.upper()], _minute(profile.week.open.time)
        )
        week_close = WeeklyInstant(
            Weekday[profile.week.close.weekday.upper()], _minute(profile.week.close.time)
        )
    return CalendarSpec(
        name=name,
        zone=zone,
        week_open=week_open,
        week_close=week_close,
        day_zone=_zone(name, "trading_day.timezone", profile.trading_day.timezone),
        day_start_minute=_minute(profile.trading_day.start),
        closed_intervals=tuple(sorted(closed, key=lambda c: c.start_ms)),
        groups=tuple(groups),
    )
