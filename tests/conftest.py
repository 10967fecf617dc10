"""Shared fixtures: calendars loaded once, the real data folder, a fixed 'now'."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.cluster_launch import RedisClusterNodes, redis_cli, start_cluster
from hypothesis import HealthCheck, settings

from fxconnector.config.calendars import load_calendar
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.time_geom import to_ms
from tests.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[1]
#: Loader checks run from a fixed moment so tests do not depend on today's date.
NOW_MS = to_ms(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
# A longer fuzz campaign by hand: HYPOTHESIS_PROFILE=fuzz pytest tests/... (issue 11 p6).
settings.register_profile("fuzz", settings.get_profile("default"), max_examples=5_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

_CALENDARS: dict[str, CalendarProfile] = {}


@pytest.fixture(autouse=True)
def _restore_fxconnector_logger() -> Iterator[None]:
    """In-process CLI calls configure logging; undo it so caplog sees the next test's logs."""
    logger = logging.getLogger("fxconnector")
    # Back to the pristine state (a module-scoped fixture may have run the CLI before this).
    logger.handlers[:], logger.propagate = [], True
    logger.setLevel(logging.NOTSET)
    yield
    logger.handlers[:], logger.propagate = [], True
    logger.setLevel(logging.NOTSET)


def calendar_profile(name: str) -> CalendarProfile:
    """A built-in calendar profile, loaded once per test session."""
    if name not in _CALENDARS:
        _CALENDARS[name] = load_calendar(name, now_ms=NOW_MS)
    return _CALENDARS[name]


@pytest.fixture(scope="session")
def fx_ny() -> CalendarProfile:
    return calendar_profile("fx_ny")


@pytest.fixture(scope="session")
def utc_00() -> CalendarProfile:
    return calendar_profile("utc_00")


@pytest.fixture(scope="session")
def always_open() -> CalendarProfile:
    return calendar_profile("always_open")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real FX data folder (../shared/data), or a skip that says why."""
    path = Path(os.environ.get("FXCONNECTOR_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (path / "README.md").is_file():
        pytest.skip(f"real data folder not found at {path} (set FXCONNECTOR_SHARED_DATA)")
    return path


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh real redis-server for one test (killed afterwards)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """A fresh real 3-master Redis Cluster on loopback for one test (killed afterwards)."""
    if redis_cli() is None:
        pytest.skip("redis-cli is not on PATH (needed to create a Redis Cluster)")
    nodes = start_cluster(tmp_path / "cluster", persist=True)  # AOF: a killed master keeps its data
    try:
        yield nodes
    finally:
        nodes.stop()
