"""A 15m chart in headless Chromium against a real `fxconnector run` whose events stream keeps
only 10 s (`surface.events_retention_s`, its minimum).

The bug this pins (issue 14's chart, after ~5 minutes of `make run`): a 15m snapshot is written
rarely, so once the stream has trimmed past its own cursor, a page that bootstrapped from
`/api/bars` was told `cursor_expired`, reloaded, got the same cursor, and reloaded `/api/bars`
in a loop. Now `/api/bars` hands out the stream's newest id: the page loads once and follows.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import Request

from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.publish.keys import SNAPSHOT_CURSOR_FIELD, SurfaceKeys
from fxconnector.runtime.publish.surface_reader import parse_stream_id
from tests.ui.test_browser import (  # the module's browser and page fixtures
    ChartPage,
    ConnectorProcess,
    browser,
    chart,
    chromium,
)

pytestmark = pytest.mark.browser
__all__ = ["browser", "chart", "chromium"]

CONFIG = (
    '[calendar]\nprofile = "always_open"\n'  # the test must not depend on the day of the week
    '[broker]\nkind = "sim"\nsymbols = ["EURUSD"]\nstartup_lookback_mins = 120\n'
    "[surface]\nevents_retention_s = 10\n"
)
TRIMMED_WITHIN_S = 120.0  # a bound on waiting for a condition, never an assertion on time
UPDATES = 20  # stream updates the page must receive before the count is checked


class ShortRetentionConnector(ConnectorProcess):
    """`fxconnector run` with CONFIG (the same process handling as the chart tests')."""

    def __init__(self, workdir: Path, config: Path) -> None:
        super().__init__(workdir)
        self.config = config

    def start(self) -> None:
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "fxconnector.app.main",
                    "run",
                    "--workdir",
                    str(self.workdir),
                    "--http",
                    f"127.0.0.1:{self.port}",
                    "--config",
                    str(self.config),
                ],
                stdout=subprocess.PIPE,
                stderr=log,
            )
        self.wait_ready()

    def redis(self) -> Any:
        return redis.Redis(unix_socket_path=str(self.workdir / "redis" / "redis.sock"))


@pytest.fixture(scope="module")
def connector(
    tmp_path_factory: pytest.TempPathFactory, chromium: Path
) -> Iterator[ShortRetentionConnector]:
    folder = tmp_path_factory.mktemp("ui_resync")
    config = folder / "config.toml"
    config.write_text(CONFIG)
    running = ShortRetentionConnector(folder / "var", config)
    try:
        running.start()
        yield running
    finally:
        if running.proc is not None:
            running.stop()


def wait_until_trimmed_past_the_snapshot(connector: ShortRetentionConnector) -> str:
    """Wait until the stream's oldest entry is newer than the EURUSD 15m snapshot's own
    cursor (what a rarely written series looks like after a few minutes); that cursor."""
    keys = SurfaceKeys()
    client = connector.redis()
    try:
        deadline = time.monotonic() + TRIMMED_WITHIN_S
        while time.monotonic() < deadline:
            cursor = client.hget(keys.snapshot("EURUSD", Timeframe.M15), SNAPSHOT_CURSOR_FIELD)
            oldest = client.xrange(keys.events, count=1)
            if cursor is not None and oldest:
                own = cursor.decode()
                if parse_stream_id(oldest[0][0].decode()) > parse_stream_id(own):
                    return str(own)
            time.sleep(0.5)
    finally:
        client.close()
    raise AssertionError(
        f"the stream was not trimmed past the 15m snapshot's cursor\n{connector.stderr()}"
    )


@pytest.mark.timeout(240)
def test_a_15m_chart_loads_bars_once_after_the_stream_trimmed_its_snapshot_cursor(
    chart: ChartPage, connector: ShortRetentionConnector
) -> None:
    snapshot_cursor = wait_until_trimmed_past_the_snapshot(connector)
    tails: list[str] = []

    def on_request(request: Request) -> None:
        if "/api/bars?" in request.url and "to_ms" not in request.url:
            tails.append(request.url)

    chart.page.on("request", on_request)
    chart.open("#symbol=EURUSD&tf=15m&tz=utc")
    state = chart.wait_for(
        f"window.__fx.state().events >= {UPDATES} && window.__fx.state()", timeout_ms=60_000
    )
    chart.screenshot("resync_15m.png")
    assert state["tf"] == "15m"
    # The page's cursor is younger than the trimmed snapshot cursor, and it loaded once.
    assert parse_stream_id(state["cursor"]) > parse_stream_id(snapshot_cursor)
    assert state["loads"] == 1, tails
    assert len(tails) == 1, tails
    assert "tf=15m" in tails[0]
    assert chart.page.evaluate("window.__fx.state().stream") == "open"
