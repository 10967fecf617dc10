"""Calendar profiles: malformed ones are clear errors, broken geometry names its date."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fxconnector.config.calendars import builtin_profiles_path, load_calendar, profile_names
from fxconnector.core.errors import ConfigError
from tests.conftest import NOW_MS

BASE: dict[str, Any] = {
    "description": "test",
    "timezone": "America/New_York",
    "week": {
        "open": {"weekday": "sunday", "time": "17:00"},
        "close": {"weekday": "friday", "time": "17:00"},
    },
    "trading_day": {"timezone": "America/New_York", "start": "17:00"},
    "closed_intervals_utc": [],
    "groups": {},
}


def profiles_file(tmp_path: Path, **profiles: dict[str, Any]) -> Path:
    path = tmp_path / "calendars.json"
    path.write_text(json.dumps({"version": 1, "profiles": profiles}))
    return path


def test_builtin_profiles() -> None:
    assert profile_names() == ["always_open", "fx_ny", "utc_00"]
    assert builtin_profiles_path().is_file()


def test_a_valid_custom_profile_loads(tmp_path: Path) -> None:
    path = profiles_file(tmp_path, mine=BASE)
    assert load_calendar("mine", now_ms=NOW_MS, path=path).name == "mine"


def test_dst_inside_trading_hours_is_rejected_with_its_date(tmp_path: Path) -> None:
    # Opening the week at Sunday 00:00 New York puts the 02:00 DST switch inside trading time.
    broken = {
        **BASE,
        "week": {
            "open": {"weekday": "sunday", "time": "00:00"},
            "close": {"weekday": "friday", "time": "17:00"},
        },
    }
    with pytest.raises(ConfigError, match=r"bucket opening 2026-03-07T22:00:00Z .* 23h long"):
        load_calendar("broken", now_ms=NOW_MS, path=profiles_file(tmp_path, broken=broken))


def test_day_start_off_the_hour_is_rejected(tmp_path: Path) -> None:
    odd = {**BASE, "trading_day": {"timezone": "Asia/Kolkata", "start": "00:00"}}
    with pytest.raises(ConfigError, match="whole UTC hour"):
        load_calendar("odd", now_ms=NOW_MS, path=profiles_file(tmp_path, odd=odd))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "not a known IANA time zone"),
        (
            {
                "week": {
                    "open": {"weekday": "funday", "time": "17:00"},
                    "close": {"weekday": "friday", "time": "17:00"},
                }
            },
            "weekday",
        ),
        ({"trading_day": {"timezone": "UTC", "start": "25:00"}}, "start"),
        (
            {
                "closed_intervals_utc": [
                    {"start": "2020-12-25", "end": "2020-12-26T00:00:00Z", "reason": "x"}
                ]
            },
            "explicit UTC offset",
        ),
        (
            {
                "closed_intervals_utc": [
                    {"start": "2020-12-26T00:00:00Z", "end": "2020-12-25T00:00:00Z", "reason": "x"}
                ]
            },
            "ends before it starts",
        ),
        (
            {
                "closed_intervals_utc": [
                    {"start": "2020-12-25T00:00:30Z", "end": "2020-12-26T00:00:00Z", "reason": "x"}
                ]
            },
            "whole minute",
        ),
        ({"groups": {"a": {"symbols": ["XAUUSD"]}, "b": {"symbols": ["XAUUSD"]}}}, "groups"),
        ({"colour": "red"}, "unknown field `colour`"),
        ({"extends": "nowhere"}, "unknown calendar profile 'nowhere'"),
    ],
)
def test_malformed_profiles_are_clear_errors(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = profiles_file(tmp_path, bad={**BASE, **change})
    with pytest.raises(ConfigError, match=message):
        load_calendar("bad", now_ms=NOW_MS, path=path)


def test_missing_key_and_unknown_profile(tmp_path: Path) -> None:
    partial = {k: v for k, v in BASE.items() if k != "trading_day"}
    path = profiles_file(tmp_path, partial=partial)
    with pytest.raises(ConfigError, match="trading_day"):
        load_calendar("partial", now_ms=NOW_MS, path=path)
    with pytest.raises(ConfigError, match="unknown calendar profile 'zz'"):
        load_calendar("zz", now_ms=NOW_MS, path=path)


def test_unreadable_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read calendar profiles"):
        load_calendar("x", now_ms=NOW_MS, path=tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="malformed"):
        load_calendar("x", now_ms=NOW_MS, path=bad)
