"""The chart as a workstation, in headless Chromium against a real `fxconnector run` (issue 14):
symbol switching, layouts from phone to desktop, the history scroll-back to the start of the
store, the view in the hash (restore, Back/Forward, an edited hash), the watchlist, the
1/2/4-chart layout with synced crosshair and time scale, averages, countdown, keys, and a
SIGKILL of the server with the page resuming.

The connector, the browser and the page helpers are test_browser's (one connector for this
module); every page fails its test on any console error. Screenshots go to test-artifacts/ui/
and are checked: pixels (candle colours where the chart is, none where it is not) and the DOM's
boxes (no horizontal overflow, nothing overlapping). The SIGKILL test is last: it restarts the
connector.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.ui.png_check import count_colour, read_png
from tests.ui.test_browser import (
    PAGE_READY_MS,
    TIME_ZONE,
    ChartPage,
    ConnectorProcess,
    Console,
    assert_chart_matches_book,
    browser,  # noqa: F401  (a fixture, used by name)
    chromium,  # noqa: F401  (a fixture, used by name)
    connector,  # noqa: F401  (a fixture, used by name)
    poll,
)

pytestmark = pytest.mark.browser

MINUTE_MS = 60_000
UP = (0x26, 0xA6, 0x9A)
DOWN = (0xEF, 0x53, 0x50)
WIDTHS = [(360, 740), (768, 1024), (1024, 600), (1280, 800), (1920, 1080)]
OpenPage = Callable[..., ChartPage]


@pytest.fixture
def open_page(browser: Browser, connector: ConnectorProcess) -> Iterator[OpenPage]:  # noqa: F811
    """Open pages of any viewport (touch for phones); each fails on a console error."""
    contexts: list[tuple[Any, Console]] = []

    def make(
        width: int = 1400, height: int = 800, fragment: str = "", touch: bool = False
    ) -> ChartPage:
        context = browser.new_context(
            viewport={"width": width, "height": height},
            timezone_id=TIME_ZONE,
            has_touch=touch,
            is_mobile=touch,
        )
        page = context.new_page()
        page.set_default_timeout(PAGE_READY_MS)
        console = Console()
        page.on("console", console.on_console)
        page.on("pageerror", console.on_page_error)
        contexts.append((context, console))
        chart = ChartPage(page, console, connector.base)
        chart.open(fragment)
        return chart

    try:
        yield make
        for _, console in contexts:
            console.assert_clean()
    finally:
        for context, _ in contexts:
            context.close()


def boxes(chart: ChartPage, selectors: list[str]) -> dict[str, dict[str, float]]:
    """The visible boxes of the first element of each selector."""
    found: dict[str, dict[str, float]] = chart.page.evaluate(
        """(selectors) => Object.fromEntries(selectors.map((s) => {
            const el = document.querySelector(s);
            if (!el || el.offsetParent === null && getComputedStyle(el).position !== 'fixed')
                return [s, null];
            const r = el.getBoundingClientRect();
            return [s, { x: r.x, y: r.y + window.scrollY, width: r.width, height: r.height }];
        }))""",
        selectors,
    )
    return {s: box for s, box in found.items() if box is not None and box["width"] > 0}


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] + 0.5 < b["x"] + b["width"]
        and b["x"] + 0.5 < a["x"] + a["width"]
        and a["y"] + 0.5 < b["y"] + b["height"]
        and b["y"] + 0.5 < a["y"] + a["height"]
    )


def assert_layout_sound(chart: ChartPage) -> None:
    """No horizontal overflow; the header's controls, the legend items, the chart and the side
    panel do not overlap one another; every legend item lies inside its pane."""
    width, scroll_width = chart.page.evaluate(
        "[window.innerWidth, document.documentElement.scrollWidth]"
    )
    assert scroll_width <= width, f"the page is {scroll_width} px wide in a {width} px viewport"
    header = chart.page.evaluate(
        """() => [...document.querySelectorAll('header > *')]
            .filter((el) => getComputedStyle(el).display !== 'none')
            .map((el) => { const r = el.getBoundingClientRect();
                           return { x: r.x, y: r.y, width: r.width, height: r.height }; })"""
    )
    for k, a in enumerate(header):
        assert a["x"] >= 0, ("header item outside", a)
        assert a["x"] + a["width"] <= width + 0.5, ("header item outside", a)
        for b in header[k + 1 :]:
            assert not overlap(a, b), ("header items overlap", a, b)
    panes = chart.page.evaluate(
        """() => [...document.querySelectorAll('.pane')].map((pane) => {
            const box = (el) => { const r = el.getBoundingClientRect();
                                  return { x: r.x, y: r.y, width: r.width, height: r.height }; };
            return { pane: box(pane), chart: box(pane.querySelector('.pane-chart')),
                     legend: [...pane.querySelectorAll('.legend > *')].map(box) };
        })"""
    )
    assert panes
    for pane in panes:
        for k, item in enumerate(pane["legend"]):
            inside = (
                item["x"] >= pane["pane"]["x"] - 0.5
                and item["x"] + item["width"] <= pane["pane"]["x"] + pane["pane"]["width"] + 0.5
            )
            assert inside, ("legend item outside its pane", item, pane["pane"])
            assert not overlap(item, pane["chart"]), ("legend over the chart", item)
            for other in pane["legend"][k + 1 :]:
                assert not overlap(item, other), ("legend items overlap", item, other)
    found = boxes(chart, ["header", "#chart-area", "#side"])
    names = list(found)
    for k, a in enumerate(names):
        for b in names[k + 1 :]:
            assert not overlap(found[a], found[b]), (a, b, found[a], found[b])


def assert_candles_painted(chart: ChartPage, name: str) -> None:
    """Save a screenshot; candles of both colours are painted inside the first chart (a blank
    or broken chart fails)."""
    path = chart.screenshot(name)
    image = read_png(path)
    box = boxes(chart, [".pane-chart"])[".pane-chart"]
    in_chart = count_colour(image, (box["x"], box["y"], box["width"], box["height"]), UP) + (
        count_colour(image, (box["x"], box["y"], box["width"], box["height"]), DOWN)
    )
    assert in_chart > 50, f"{name}: no candles painted in the chart ({in_chart} pixels)"


def symbol_of_book(chart: ChartPage) -> set[str]:
    return {bar["symbol"] for bar in chart.fx("book()")}


# --- the tests ----------------------------------------------------------------------------------


def test_symbol_switching_by_picker_key_and_watchlist(open_page: OpenPage) -> None:
    chart = open_page()
    assert symbol_of_book(chart) == {"EURUSD"}
    chart.page.select_option("#symbol", "GBPUSD")
    chart.wait_for(
        "window.__fx.state().symbol === 'GBPUSD' && window.__fx.state().loads >= 1"
        " && window.__fx.book().length > 0"
        " && window.__fx.book().every((b) => b.symbol === 'GBPUSD')"
    )
    assert "symbol=GBPUSD" in chart.page.url
    assert chart.page.inner_text(".legend-title") == "GBPUSD · 1m"
    assert_chart_matches_book(chart)
    # The S key: the next symbol; Shift+S: back.
    chart.page.locator(".pane-chart").first.click()
    chart.page.keyboard.press("s")
    chart.wait_for(
        "window.__fx.state().symbol === 'USDJPY'"
        " && window.__fx.book().length > 0"
        " && window.__fx.book().every((b) => b.symbol === 'USDJPY')"
    )
    # USDJPY's prices with 3 decimals (its pip is 0.01), EURUSD's with 5.
    close = chart.page.inner_text(".legend-item:nth-of-type(5)")
    assert close.startswith("C "), close
    assert len(close.split(".")[-1]) == 3, close
    chart.page.keyboard.press("Shift+S")
    chart.wait_for("window.__fx.state().symbol === 'GBPUSD'")
    # The T key: the next timeframe.
    chart.page.keyboard.press("t")
    chart.wait_for(
        "window.__fx.state().tf === '5m' && window.__fx.bars().length > 0"
        " && window.__fx.bars().every((p) => p.time % 300 === 0)"
    )
    # A watchlist row: its symbol on the active chart.
    chart.page.click("#watch-rows tr[data-symbol='EURUSD']")
    chart.wait_for(
        "window.__fx.state().symbol === 'EURUSD' && window.__fx.book().length > 0"
        " && window.__fx.book().every((b) => b.symbol === 'EURUSD')"
    )
    close = chart.page.inner_text(".legend-item:nth-of-type(5)")
    assert len(close.split(".")[-1]) == 5, close
    chart.wait_for("window.__fx.state().stream === 'open'")
    assert_candles_painted(chart, "10-switched-to-eurusd-5m.png")


@pytest.mark.parametrize(("width", "height"), WIDTHS, ids=[f"{w}px" for w, _ in WIDTHS])
def test_layout_holds_from_phone_to_desktop(open_page: OpenPage, width: int, height: int) -> None:
    touch = width < 500
    chart = open_page(width, height, touch=touch)
    chart.wait_for("window.__fx.state().stream === 'open'")
    assert_layout_sound(chart)
    assert_candles_painted(chart, f"11-layout-{width}.png")
    # A tap (a click on desktop) shows the crosshair and its bar in the legend.
    box = boxes(chart, [".pane-chart"])[".pane-chart"]
    x, y = box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.35
    if touch:
        chart.page.touchscreen.tap(x, y)
    else:
        chart.page.mouse.click(x, y)
    hovered = chart.wait_for("window.__fx.state().hovered")
    legend_time = chart.page.inner_text(".legend-time")
    book = {bar["open_ms"]: bar for bar in chart.fx("book()")}
    assert hovered in book
    assert legend_time.startswith(
        chart.page.evaluate(
            "(ms) => new Date(ms).toISOString().slice(0, 16).replace('T', ' ')",
            hovered,
        )
    )
    assert_layout_sound(chart)  # the hovered legend is longer: it still fits
    chart.screenshot(f"12-tap-crosshair-{width}.png")
    if width == 1920:
        # Four charts at full HD: the same rules in every pane.
        chart.page.select_option("#layout", "4")
        chart.wait_for(
            "window.__fx.panes().length === 4 && window.__fx.panes().every((p) => p.loads >= 1)"
        )
        assert_layout_sound(chart)
        assert_candles_painted(chart, "13-layout-1920-four.png")


def test_history_scrolls_back_to_the_start_of_the_store(
    open_page: OpenPage,
    connector: ConnectorProcess,  # noqa: F811
) -> None:
    chart = open_page(1280, 800)
    store_first = connector.get("/api/bars", symbol="EURUSD", tf="1m", from_ms=0, limit=1)["bars"]
    assert store_first, "the demo store has history"
    first_ms = store_first[0]["open_ms"]
    drawn_first = chart.fx("panes()")[0]["firstOpenMs"]
    assert drawn_first > first_ms, "the first page does not reach the start of the store"
    box = boxes(chart, [".pane-chart"])[".pane-chart"]
    y = box["y"] + box["height"] * 0.4
    pages_seen = 0
    for _ in range(120):  # drag the chart to the right until the first bar is in view
        pane = chart.fx("panes()")[0]
        if pane["history"]["start"] and (chart.fx(f"xOf({pane['startOfData']})") or 0) > 60:
            break
        chart.page.mouse.move(box["x"] + 60, y)
        chart.page.mouse.down()
        chart.page.mouse.move(box["x"] + box["width"] - 120, y, steps=8)
        chart.page.mouse.up()
        chart.wait_for("!window.__fx.panes()[0].history.loading")
        pane = chart.fx("panes()")[0]
        if pane["history"]["pages"] > pages_seen:
            pages_seen = pane["history"]["pages"]
            shift = pane["history"]["lastPrepend"]
            # Prepending did not move the view: the same span before and after.
            assert shift["before"] == shift["after"], shift
            assert shift["bars"] > 0
    pane = chart.fx("panes()")[0]
    assert pane["history"]["start"], f"no start of data after {pages_seen} pages"
    assert pages_seen >= 2
    assert pane["firstOpenMs"] == first_ms
    assert pane["startOfData"] == first_ms // 1000
    # The oldest bars drawn are the store's finals, exactly.
    oldest = connector.get("/api/bars", symbol="EURUSD", tf="1m", from_ms=first_ms, limit=200)
    held = {bar["open_ms"]: bar for bar in chart.fx("book()")}
    for bar in oldest["bars"]:
        assert held[bar["open_ms"]] == bar
    assert_chart_matches_book(chart)
    chart.page.mouse.move(box["x"] + box["width"] * 0.7, y)  # the crosshair off the label
    path = chart.screenshot("14-start-of-data.png")
    # The shaded area left of the first bar: no candle there, candles right of it.
    image = read_png(path)
    edge = chart.fx(f"xOf({pane['startOfData']})")
    assert edge is not None
    assert 40 < edge < box["width"] - 80, edge
    shaded = (box["x"], box["y"], edge - 10, box["height"] * 0.6)
    assert count_colour(image, shaded, UP) + count_colour(image, shaded, DOWN) == 0
    bars = (box["x"] + edge, box["y"], box["width"] - edge - 80, box["height"] * 0.6)
    assert count_colour(image, bars, UP) + count_colour(image, bars, DOWN) > 20
    # Back to realtime with the button: the live edge again.
    chart.page.click("#realtime")
    chart.wait_for("window.__fx.panes()[0].atRealtime")


def test_view_in_the_hash_restores_and_follows_back_forward(
    open_page: OpenPage,
    connector: ConnectorProcess,  # noqa: F811
) -> None:
    newest = connector.get("/api/bars", symbol="GBPUSD", tf="5m", limit=1)["bars"][-1]["open_ms"]
    # Two days back, older than the first page of the 1m chart: the page loads history for it.
    from_ms = newest - 2 * 86_400_000
    to_ms = from_ms + 3 * 3_600_000
    fragment = (
        f"#symbol=GBPUSD&tf=5m&tz=utc&layout=2&charts=EURUSD.1m"
        f"&from={from_ms // 1000}&to={to_ms // 1000}"
    )
    chart = open_page(1400, 800, fragment)
    spans = chart.wait_for(
        """([from, to]) => {
            const panes = window.__fx.panes();
            const near = (p) => p.visibleMs && Math.abs(p.visibleMs.from - from) <= 5 * 60000
                && Math.abs(p.visibleMs.to - to) <= 5 * 60000;
            return panes.length === 2 && panes.every(near) && panes;
        }""",
        arg=[from_ms, to_ms],
    )
    assert [(p["symbol"], p["tf"]) for p in spans] == [("GBPUSD", "5m"), ("EURUSD", "1m")]
    assert spans[1]["history"]["pages"] >= 1  # the 1m chart paged back to reach the span
    chart.screenshot("15-hash-restored.png")
    # A new timeframe is a new history entry; Back returns to the previous one.
    chart.page.select_option("#tf", "15m")
    chart.wait_for("window.__fx.state().tf === '15m' && location.hash.includes('tf=15m')")
    chart.page.go_back()
    chart.wait_for("window.__fx.state().tf === '5m' && window.__fx.state().loads >= 1")
    assert chart.fx("panes()")[1]["symbol"] == "EURUSD"
    chart.page.go_forward()
    chart.wait_for("window.__fx.state().tf === '15m'")
    # An edited hash is applied: one chart, another symbol, local time.
    chart.page.evaluate("location.hash = '#symbol=USDJPY&tf=1m&tz=local'")
    chart.wait_for(
        "window.__fx.panes().length === 1 && window.__fx.state().symbol === 'USDJPY'"
        " && !window.__fx.state().utc && window.__fx.book().length > 0"
        " && window.__fx.book().every((b) => b.symbol === 'USDJPY')"
    )
    assert chart.page.locator(".pane").count() == 1
    # Nonsense in the hash falls back to defaults without an error.
    chart.page.evaluate("location.hash = '#symbol=NOPE&tf=9m&layout=7&from=abc'")
    chart.wait_for(
        "window.__fx.state().symbol === 'EURUSD' && window.__fx.state().tf === '1m'"
        " && window.__fx.book().length > 0"
        " && window.__fx.book().every((b) => b.symbol === 'EURUSD' && b.tf === '1m')"
        " && window.__fx.bars().every((p) => p.time % 60 === 0)"
    )
    assert_chart_matches_book(chart)


def test_watchlist_shows_live_bid_ask_spread_from_the_tick_cache(
    open_page: OpenPage,
    connector: ConnectorProcess,  # noqa: F811
) -> None:
    chart = open_page()

    def rows() -> dict[str, list[str]]:
        found: dict[str, list[str]] = chart.page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll('#watch-rows tr')]
                .map((tr) => [tr.dataset.symbol, [...tr.children].map((c) => c.textContent)]))"""
        )
        return found

    shown = poll(
        rows,
        lambda r: all(v[1] != "—" for v in r.values()) and len(r) == 3,
        20,
        "a tick for every symbol",
    )
    assert list(shown) == ["EURUSD", "GBPUSD", "USDJPY"]
    ticks = {t["symbol"]: t for t in connector.get("/api/ticks")["ticks"]}
    for symbol, (name, bid, ask, spread) in shown.items():
        assert name == symbol
        decimals = 3 if symbol.endswith("JPY") else 5
        assert len(bid.split(".")[1]) == decimals
        assert len(ask.split(".")[1]) == decimals
        assert float(ask) >= float(bid)
        pip = 0.01 if symbol.endswith("JPY") else 0.0001
        assert abs(float(spread) - (float(ask) - float(bid)) / pip) < 0.06
        # The same quote as the API's, or a newer one (the page polls every second).
        assert abs(float(bid) - ticks[symbol]["bid"]) < 200 * pip
    # Live: the quotes move.
    first = rows()
    poll(rows, lambda r: r != first, 20, "the watchlist updating")
    assert chart.page.locator("#watch-rows tr.current").get_attribute("data-symbol") == "EURUSD"
    chart.screenshot("16-watchlist.png")


def test_four_synced_charts_averages_countdown_and_collapsible_status(open_page: OpenPage) -> None:
    chart = open_page(1600, 900)
    # No operations noise in the header: the counts and ids are in the status panel, in words.
    header = chart.page.inner_text("header")
    assert "events" not in header
    assert "last id" not in header
    assert "cursor" not in header
    chart.wait_for("document.querySelector('#connection').textContent.includes('updates received')")
    chart.page.locator(".pane-chart").first.click()
    chart.page.keyboard.press("l")
    chart.page.keyboard.press("l")
    chart.wait_for(
        "window.__fx.panes().length === 4 && window.__fx.panes().every((p) => p.loads >= 1)"
    )
    assert "layout=4" in chart.page.url
    assert [p["tf"] for p in chart.fx("panes()")] == ["1m", "5m", "15m", "30m"]
    # Synced time scale: dragging the first chart moves the others to the same span.
    box = boxes(chart, [".pane-chart"])[".pane-chart"]
    y = box["y"] + box["height"] * 0.4
    chart.page.mouse.move(box["x"] + 40, y)
    chart.page.mouse.down()
    chart.page.mouse.move(box["x"] + box["width"] - 60, y, steps=6)
    chart.page.mouse.up()
    panes = chart.wait_for(
        """() => { const p = window.__fx.panes();
            return !p[0].atRealtime && p.slice(1).every((q) =>
                Math.abs(q.visibleMs.to - p[0].visibleMs.to) <= 30 * 60000) && p; }"""
    )
    assert not panes[0]["atRealtime"]
    # Synced crosshair: the others put theirs on the bar at the same time.
    chart.page.mouse.move(box["x"] + box["width"] * 0.5, y)
    synced = chart.wait_for(
        """() => { const p = window.__fx.panes();
            return p[0].hovered !== null && p.slice(1).every((q) => q.crosshair !== null) && p; }"""
    )
    for pane, tf_ms in zip(synced[1:], (5, 15, 30), strict=True):
        assert 0 <= synced[0]["hovered"] - pane["crosshair"] < tf_ms * MINUTE_MS
    # Realtime: the R key brings every chart back to the live edge.
    chart.page.keyboard.press("r")
    chart.wait_for("window.__fx.panes().every((p) => p.atRealtime)")
    # Averages on finals; the live bar's point drawn apart (amber) while it is a preview.
    chart.page.select_option("#averages", "sma20,ema50")
    chart.wait_for("window.__fx.line('sma20').length > 100")
    # One evaluation: the page merges live events between two calls.
    book, line, step = chart.page.evaluate(
        "[window.__fx.book(), window.__fx.line('sma20'), window.__fx.linePreview('sma20')]"
    )
    finals = [bar for bar in book if bar["complete"]]
    closes = [bar["close"] for bar in finals]
    last_final = next(p for p in reversed(line) if "color" not in p)
    index = len(finals) - 1
    while finals[index]["open_ms"] // 1000 != last_final["time"]:
        index -= 1
    assert abs(last_final["value"] - sum(closes[index - 19 : index + 1]) / 20) < 1e-9
    if book[-1]["complete"]:
        assert step == []
    else:
        assert line[-1]["time"] == book[-1]["open_ms"] // 1000
        assert line[-1]["color"] == "#f5b700"
        assert [p["time"] for p in step] == [line[-2]["time"], line[-1]["time"]]
    assert len(chart.fx("line('ema50')")) > 100
    countdown = chart.page.inner_text(".countdown")
    assert countdown.startswith("closes in "), countdown
    chart.screenshot("17-four-charts-averages.png")
    # The side panel's sections fold and stay folded after a reload.
    chart.page.click("#status > summary")
    # The fold is remembered by the `toggle` event, which fires a task after `open` changes:
    # reload once it is stored, not merely shown.
    chart.wait_for("JSON.parse(localStorage.getItem('fxconnector.side') ?? '{}').status === false")
    chart.page.reload()
    chart.wait_for("window.__fx && window.__fx.state().loads >= 1")
    assert chart.page.evaluate("document.querySelector('#status').open") is False
    assert chart.page.evaluate("document.querySelector('#watch').open") is True
    assert chart.fx("panes()")[3]["tf"] == "30m"  # the layout came back from the hash
    assert "ma=sma20%2Cema50" in chart.page.url
    chart.wait_for("window.__fx.line('ema50').length > 100")  # so did the averages
    assert_layout_sound(chart)
    chart.screenshot("18-status-folded.png")


@pytest.mark.timeout(150)
def test_sigkill_of_the_server_and_resume(open_page: OpenPage, connector: ConnectorProcess) -> None:  # noqa: F811
    chart = open_page()
    chart.wait_for("window.__fx.state().stream === 'open'")
    before = chart.fx("state()")
    chart.console.allow_network_failures = True
    assert connector.proc is not None
    connector.proc.send_signal(signal.SIGKILL)
    connector.proc.wait()
    assert connector.proc.returncode == -signal.SIGKILL
    if connector.proc.stdout is not None:
        connector.proc.stdout.close()
    chart.page.locator("#banner").wait_for(state="visible", timeout=15_000)
    chart.wait_for("window.__fx.state().stream === 'lost'")
    assert "disconnected" in chart.page.inner_text("#stream-state")
    chart.screenshot("19-sigkill-lost.png")
    connector.start()  # crash-only: the same start-up after a kill
    chart.page.locator("#banner").wait_for(state="hidden", timeout=40_000)
    chart.wait_for(
        "(id) => window.__fx.state().stream === 'open' && window.__fx.state().lastEventId !== id",
        arg=before["lastEventId"],
        timeout_ms=40_000,
    )
    served = poll(
        lambda: connector.get("/api/bars", symbol="EURUSD", tf="1m", limit=30)["bars"],
        bool,
        10,
        "bars after the restart",
    )

    def drawn_finals() -> dict[int, dict[str, Any]]:
        return {bar["open_ms"]: bar for bar in chart.fx("book()") if bar["complete"]}

    poll(drawn_finals, lambda held: served[-1]["open_ms"] in held, 20, "newest final drawn")
    held = drawn_finals()
    for bar in served:
        assert held[bar["open_ms"]] == bar
    assert_chart_matches_book(chart)
    chart.console.allow_network_failures = False
    assert_candles_painted(chart, "20-sigkill-resumed.png")
