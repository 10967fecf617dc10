"""The SMC overlay in headless Chromium against a real `fxconnector run` (the demo, SMC on).

The overlay's debug hook `window.__fxSmc` says what it draws (`drawn()`: the shapes its series
primitive paints) and what it knows (`known()`). A hint the connector's SMC consumer published
is drawn; a hint published before the final bar it is confirmed at is known but not drawn
until the chart holds that bar. Screenshots go to `test-artifacts/ui/`.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from fxconnector.core.model.smc import Direction, SmcHint, SmcKind, hint_id
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.publish.keys import STREAM_FIELD, SurfaceKeys
from fxconnector.smc import encode_hint
from tests.ui.test_browser import (  # the module's connector, browser and page fixtures
    FINAL_WITHIN_MS,
    ChartPage,
    ConnectorProcess,
    browser,
    chart,
    chromium,
    connector,
)

pytestmark = pytest.mark.browser
__all__ = ["browser", "chart", "chromium", "connector"]

SERIES = "#symbol=EURUSD&tf=1m&tz=utc"


def drawn_ids(chart: ChartPage) -> set[str]:
    return {shape["id"] for shape in chart.page.evaluate("window.__fxSmc.drawn()")}


def test_the_overlay_draws_the_published_hints_and_toggles_them(
    chart: ChartPage, connector: ConnectorProcess
) -> None:
    chart.open(SERIES)
    chart.wait_for("window.__fxSmc && window.__fxSmc.drawn().length > 0")
    edge = chart.page.evaluate("window.__fxSmc.edgeMs()")
    served: list[dict[str, Any]] = connector.get("/api/smc", symbol="EURUSD", tf="1m")["hints"]
    swing = next(
        h for h in reversed(served) if h["kind"] == "swing_high" and h["confirm_ts"] <= edge
    )
    drawn = chart.page.evaluate("window.__fxSmc.drawn()")
    by_id = {shape["id"]: shape for shape in drawn}
    assert by_id[swing["id"]]["type"] == "marker"
    assert by_id[swing["id"]]["price"] == swing["price"]
    assert {s["type"] for s in drawn} >= {"marker", "box"}
    # Only what the chart has reached, never a hint confirmed after its newest final.
    known = {h["id"]: h for h in chart.page.evaluate("window.__fxSmc.known()")}
    assert all(known[s["id"]]["confirm_ts"] <= edge for s in drawn)
    chart.screenshot("smc_overlay.png")
    chart.page.uncheck("input[data-smc=swings]")
    chart.wait_for(
        "!window.__fxSmc.drawn().some((s) => s.kind === 'swing_high' || s.kind === 'swing_low')"
    )
    assert swing["id"] not in drawn_ids(chart)
    chart.page.check("input[data-smc=swings]")
    chart.wait_for("(id) => window.__fxSmc.drawn().some((s) => s.id === id)", swing["id"])


def test_a_hint_is_not_drawn_before_its_confirming_bar(
    chart: ChartPage, connector: ConnectorProcess
) -> None:
    """A gap confirmed at the close of the minute still being built arrives at once, waits
    unseen while only its preview exists, and appears when that minute's final is drawn."""
    chart.open(SERIES)
    chart.wait_for("window.__fxSmc && window.__fxSmc.edgeMs() !== null")
    edge = chart.page.evaluate("window.__fxSmc.edgeMs()")
    anchor = edge + 1  # the open of the bar after the newest final: not final yet
    price = chart.fx("book()")[-1]["close"]
    hint = SmcHint(
        symbol="EURUSD",
        tf=Timeframe.M1,
        kind=SmcKind.FVG,
        id=hint_id("EURUSD", Timeframe.M1, SmcKind.FVG, Direction.BULL, anchor),
        rev=0,
        anchor_ts=anchor,
        confirm_ts=anchor + 59_999,
        direction=Direction.BULL,
        top=round(price + 0.0005, 5),
        bottom=round(price - 0.0005, 5),
    )
    client = redis.Redis(unix_socket_path=str(connector.workdir / "redis" / "redis.sock"))
    try:
        client.xadd(SurfaceKeys().smc_events, {STREAM_FIELD: encode_hint(hint)})
    finally:
        client.close()
    chart.wait_for("(id) => window.__fxSmc.known().some((h) => h.id === id)", hint.id)
    assert chart.page.evaluate("window.__fxSmc.edgeMs()") < hint.confirm_ts
    assert hint.id not in drawn_ids(chart)
    chart.screenshot("smc_overlay_waiting.png")
    chart.wait_for(
        "(id) => window.__fxSmc.drawn().some((s) => s.id === id)",
        hint.id,
        timeout_ms=FINAL_WITHIN_MS,
    )
    assert chart.page.evaluate("window.__fxSmc.edgeMs()") >= hint.confirm_ts
    chart.screenshot("smc_overlay_confirmed.png")
