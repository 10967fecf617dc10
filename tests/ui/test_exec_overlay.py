"""The trades overlay in headless Chromium against a real `fxconnector run --with-exec` (the sim
demo with the execution process in paper mode, what `make run` starts).

A real paper order goes through the exec process's control socket (`fxconnector order submit`);
its fill must appear as a marker at the fill price on the bar holding the fill time (1m, then
5m), and the open position as a price line at its average price with its unrealised P&L. What
the library holds is read through `window.__fxExec`; the screenshot is checked too: the line's
colour runs along the position's price row, and is gone there when the toggle is off.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.ui.png_check import count_colour, read_png
from tests.ui.test_browser import (  # the module's browser and page fixtures
    ChartPage,
    ConnectorProcess,
    browser,
    chart,
    chromium,
    poll,
)

pytestmark = pytest.mark.browser
__all__ = ["browser", "chart", "chromium"]

FXCONNECTOR = [sys.executable, "-m", "fxconnector.app.main"]
SERIES = "#symbol=EURUSD&tf=1m&tz=utc"
BLUE = (0x29, 0x62, 0xFF)  # EXEC_COLORS.buy / long in exec_overlay.js
PRICE_SCALE_PX = 90  # the right price scale (its labels are not the line)


@pytest.fixture(scope="module")
def connector(
    tmp_path_factory: pytest.TempPathFactory, chromium: Path
) -> Iterator[ConnectorProcess]:
    running = ConnectorProcess(tmp_path_factory.mktemp("ui-exec") / "var", "--with-exec")
    try:
        running.start()
        yield running
    finally:
        if running.proc is not None:
            running.stop()


def submit_paper_order(connector: ConnectorProcess) -> dict[str, Any]:
    """A market buy of 1,000 EURUSD through `fxconnector order submit`; its answer. Retried
    with a new id while the exec child starts (1, 2) or waits for its first live tick (3)."""
    for attempt in range(300):
        payload = msgspec.json.encode(
            {
                "intent_id": f"ui-{attempt}",
                "trader": "demo",
                "symbol": "EURUSD",
                "side": "buy",
                "units": 1000,
                "type": "market",
            }  # no ts: the CLI stamps it (an old one would be denied as stale_intent)
        ).decode()
        command = [*FXCONNECTOR, "order", "submit", "--workdir", str(connector.workdir)]
        done = subprocess.run(
            [*command, "--json", payload],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode == 0:
            answer: dict[str, Any] = msgspec.json.decode(done.stdout)
            return answer
        assert done.returncode in (1, 2, 3), done.stderr
        assert "stale_intent" not in done.stdout + done.stderr
        time.sleep(0.1)
    raise AssertionError(f"no paper order placed:\n{connector.stderr()}")


def drawn_with(chart: ChartPage, marker_id: str, bar_s: int) -> dict[str, Any]:
    """The first chart's overlay once it holds the fill's marker on the bar `bar_s` and a
    position line."""
    drawn: dict[str, Any] = chart.wait_for(
        """([id, bar]) => {
            const first = window.__fxExec && window.__fxExec.drawn()[0];
            return first && first.lines.length > 0 &&
                first.markers.some((m) => m.id === id && m.time === bar) && first;
        }""",
        arg=[marker_id, bar_s],
    )
    return drawn


def line_pixels(chart: ChartPage, path: Path, price: float) -> int:
    """Pixels of the line colour along the row of `price` in the first chart's candle pane."""
    box = chart.page.evaluate(
        """(price) => {
            const r = document.querySelector('.pane .pane-chart').getBoundingClientRect();
            return { left: r.left, top: r.top, width: r.width, y: window.__fxExec.yOf(0, price) };
        }""",
        price,
    )
    assert box["y"] is not None
    row = (box["left"], box["top"] + box["y"] - 1, box["width"] - PRICE_SCALE_PX, 3)
    return count_colour(read_png(path), row, BLUE, tolerance=30, step=1)


@pytest.mark.timeout(180)
def test_a_paper_fill_is_a_marker_and_the_position_a_price_line(
    chart: ChartPage, connector: ConnectorProcess
) -> None:
    chart.open(SERIES)
    chart.wait_for("window.__fxExec && window.__fxExec.polls() > 0")
    assert chart.page.evaluate("window.__fxExec.drawn()[0]")["markers"] == []
    answer = submit_paper_order(connector)
    assert answer["order"]["state"] == "FILLED"
    intent_id = answer["intent_id"]
    fills = poll(
        lambda: [f for f in connector.get("/api/fills")["fills"] if f["intent_id"] == intent_id],
        bool,
        15,
        "the fill on /api/fills",
    )
    assert len(fills) == 1
    fill = fills[0]
    assert (fill["side"], fill["units"], fill["symbol"]) == ("buy", 1000, "EURUSD")
    [position] = connector.get("/api/positions", trader="demo")["positions"]
    assert (position["symbol"], position["units"]) == ("EURUSD", 1000)
    avg = position["avg_price"]
    marker_id = f"fill:{intent_id}:{fill['fill_id']}"

    # 1m: on the minute holding the fill time, at the fill price.
    minute_s = (fill["ts"] - fill["ts"] % 60_000) // 1000
    drawn = drawn_with(chart, marker_id, minute_s)
    [marker] = [m for m in drawn["markers"] if m["id"] == marker_id]
    assert marker["price"] == fill["price"]
    assert (marker["position"], marker["shape"]) == ("atPriceBottom", "arrowUp")
    assert marker["text"] == f"B 1,000 @ {fill['price']:.5f}"
    assert minute_s in {point["time"] for point in chart.candles()}  # on a drawn bar
    [line] = drawn["lines"]
    assert line["price"] == avg
    assert line["title"].startswith(f"demo long 1,000 @ {avg:.5f} uPnL ")
    assert line["title"].endswith(" USD")  # a tick is there: the P&L is known
    # The library's markers are the chart's own (gaps, revisions and the fill together).
    assert marker_id in {m.get("id") for m in chart.fx("markers()")}

    shot = chart.screenshot("exec_overlay_1m.png")
    assert line_pixels(chart, shot, avg) > 150  # the dashed line across the pane

    # Off: no marker, no line, and the row is empty of the line's colour.
    chart.page.uncheck("#exec-toggle")
    chart.wait_for(
        "(() => { const d = window.__fxExec.drawn()[0]; "
        "return d.markers.length === 0 && d.lines.length === 0; })()"
    )
    off = chart.screenshot("exec_overlay_off.png")
    assert line_pixels(chart, off, avg) < 10
    chart.page.check("#exec-toggle")

    # 5m: the same fill on the 5-minute bucket holding it.
    chart.page.select_option("#tf", "5m")
    five_s = (fill["ts"] - fill["ts"] % 300_000) // 1000
    drawn = drawn_with(chart, marker_id, five_s)
    assert [m["price"] for m in drawn["markers"] if m["id"] == marker_id] == [fill["price"]]
    assert five_s in {point["time"] for point in chart.candles()}
    assert [line["price"] for line in drawn["lines"]] == [avg]
    chart.screenshot("exec_overlay_5m.png")

    # Another symbol on the chart: none of EURUSD's trades on it; back: they return.
    chart.page.select_option("#symbol", "GBPUSD")
    chart.wait_for(
        "(() => { const d = window.__fxExec.drawn()[0]; return d.symbol === 'GBPUSD' && "
        "window.__fx.state().stream === 'open' && d.markers.length === 0 && "
        "d.lines.length === 0; })()"
    )
    chart.page.select_option("#symbol", "EURUSD")
    drawn_with(chart, marker_id, five_s)
