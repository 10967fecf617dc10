"""The preview after a restart (issue 14, point 4): the server is killed and started again in
the middle of a minute while the page is open. The restarted producer has seen only the ticks
since its start, so its bootstrap preview of the current minute is later but thinner (at first
O=H=L=C, V=1). The page must keep the fuller candle it holds (the `thinner_preview` rule of
ui/web/merge.js, the twin of client/merge.py) until a preview with as many ticks or the
minute's final arrives; it never draws the collapsed candle.

A watcher in the page records every state of that minute's bar in the merge book and on the
chart (every 50 ms) from just before the kill until the final; the test checks each of them.
The scenario is checked too: the restarted server did serve a thinner preview of the same
minute (when the restart crossed a minute boundary the cycle runs again, at most three times).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.test_browser import (  # the module's browser and page fixtures
    FINAL_WITHIN_MS,
    ChartPage,
    ConnectorProcess,
    browser,
    chart,
    chromium,
    poll,
)

pytestmark = pytest.mark.browser
__all__ = ["browser", "chart", "chromium"]

SERIES = "#symbol=EURUSD&tf=1m&tz=utc"
MINUTE_MS = 60_000
MIN_TICKS = 4  # the held preview is fuller than a restart's first one by at least this
LATEST_START_S = 25  # kill no later than this second of the minute: the restart fits in it
CYCLES = 3

WATCH = """(openMs) => {
    const states = [];
    let last = null;
    const read = () => {
        const bar = window.__fx.book().find((b) => b.open_ms === openMs) ?? null;
        const candle = window.__fx.bars().find((p) => p.time === openMs / 1000) ?? null;
        const volume = window.__fx.volumes().find((p) => p.time === openMs / 1000) ?? null;
        const state = { bar, candle: candle && { open: candle.open, high: candle.high,
            low: candle.low, close: candle.close }, volume: volume && volume.value };
        const text = JSON.stringify(state);
        if (text !== last) {
            states.push(state);
            last = text;
        }
    };
    read();
    window.__watch = { states, timer: setInterval(read, 50) };
}"""


@pytest.fixture(scope="module")
def connector(
    tmp_path_factory: pytest.TempPathFactory, chromium: Path
) -> Iterator[ConnectorProcess]:
    running = ConnectorProcess(tmp_path_factory.mktemp("ui-restart") / "var")
    try:
        running.start()
        yield running
    finally:
        if running.proc is not None:
            running.stop()


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def fuller_preview(chart: ChartPage) -> dict[str, Any]:
    """The page's live preview once it has MIN_TICKS ticks and a range, early enough in its
    minute that a restart fits in what is left of it."""
    deadline = time.monotonic() + 3 * MINUTE_MS / 1000
    while time.monotonic() < deadline:
        book = chart.fx("book()")
        bar = book[-1] if book else None
        second = (wall_ms() % MINUTE_MS) / 1000
        if (
            bar is not None
            and not bar["complete"]
            and bar["open_ms"] == wall_ms() - wall_ms() % MINUTE_MS
            and bar["tick_count"] >= MIN_TICKS
            and bar["high"] > bar["low"]
            and bar["volume"] > 1
            and second <= LATEST_START_S
        ):
            return dict(bar)
        time.sleep(0.1)
    raise AssertionError("no live preview with a few ticks early in a minute")


def restart_cycle(
    chart: ChartPage, connector: ConnectorProcess
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Kill and restart the server under a fuller preview; (the held preview, the restarted
    server's first preview of the same minute, or None when the minute had passed)."""
    held = fuller_preview(chart)
    chart.page.evaluate(WATCH, held["open_ms"])
    assert connector.proc is not None
    connector.proc.send_signal(signal.SIGKILL)
    connector.proc.wait()
    if connector.proc.stdout is not None:
        connector.proc.stdout.close()
    connector.start()  # crash-only: the same start-up after a kill
    # Its first preview (the first tick after the start makes it), while the minute lasts.
    while wall_ms() <= held["close_ms"]:
        preview = connector.get(
            "/api/bars", symbol="EURUSD", tf="1m", limit=5, include_preview="true"
        ).get("preview")
        if preview is not None:
            return held, preview if preview["open_ms"] == held["open_ms"] else None
        time.sleep(0.05)
    return held, None


@pytest.mark.timeout(400)
def test_a_restart_does_not_collapse_the_live_candle(
    chart: ChartPage, connector: ConnectorProcess
) -> None:
    chart.open(SERIES)
    chart.wait_for("window.__fx.state().stream === 'open'")
    chart.console.allow_network_failures = True
    for _ in range(CYCLES):
        held, thinner = restart_cycle(chart, connector)
        if thinner is not None and thinner["tick_count"] < held["tick_count"]:
            break
        chart.page.evaluate("clearInterval(window.__watch.timer)")
    else:
        raise AssertionError("the restart never fell inside one minute with a thinner preview")
    open_ms = held["open_ms"]
    # The restarted server's bootstrap preview of the same minute is the thin one.
    assert thinner["event_ts"] >= held["event_ts"]
    # The page reconnects (a new bootstrap, or a resumed stream) and the minute's final arrives.
    chart.wait_for("window.__fx.state().stream === 'open'", timeout_ms=40_000)
    chart.wait_for(
        "(openMs) => window.__fx.book().some((b) => b.open_ms === openMs && b.complete)",
        arg=open_ms,
        timeout_ms=FINAL_WITHIN_MS,
    )
    chart.wait_for("window.__watch.states.at(-1).bar?.complete === true")
    chart.page.evaluate("clearInterval(window.__watch.timer)")
    states: list[dict[str, Any]] = chart.page.evaluate("window.__watch.states")
    assert states[0]["bar"] is not None
    assert states[0]["bar"]["tick_count"] >= held["tick_count"]
    for state in states:
        bar, candle = state["bar"], state["candle"]
        assert bar is not None, "the minute's bar vanished from the book"
        assert candle is not None, "the minute's candle vanished from the chart"
        # What is drawn is what the book holds.
        assert [candle[k] for k in ("open", "high", "low", "close")] == [
            bar[k] for k in ("open", "high", "low", "close")
        ]
        assert state["volume"] == bar["volume"]
        if bar["complete"]:
            continue
        # Until the final: never the collapsed candle, never fewer ticks than held.
        assert bar["tick_count"] >= held["tick_count"], (held, bar)
        assert bar["high"] > bar["low"], bar
        assert bar["volume"] > 1, bar
    assert states[-1]["bar"]["complete"]
    final = next(
        b
        for b in connector.get("/api/bars", symbol="EURUSD", tf="1m", limit=5)["bars"]
        if b["open_ms"] == open_ms
    )
    assert states[-1]["bar"] == final
    poll(lambda: chart.fx("state()")["lost"], lambda lost: not lost, 20, "the banner cleared")
    chart.console.allow_network_failures = False
    chart.screenshot("preview_after_restart.png")
