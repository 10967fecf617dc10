"""The web chart in headless Chromium against a real `fxconnector run` (DESIGN §8).

One connector (the sim demo on a temporary workdir and a free port) serves the whole module;
every test opens its own page and fails on any console error or uncaught page error. The chart's
data is read through the page's debug hook `window.__fx` (the library's own series data), and
every state is saved as a screenshot under `test-artifacts/ui/`. The tests run in file order:
the last one stops and restarts the connector.

Chromium is Debian's (`/usr/bin/chromium`, installed by `make test`); without it these tests
skip and say why.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest
import redis
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish.keys import STREAM_FIELD, SurfaceKeys
from tests.redis_server import free_port

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIME_ZONE = "Europe/Kyiv"  # the local-time toggle needs an offset that is not zero
READY_WITHIN_S = 30.0
STOP_WITHIN_S = 15.0
PAGE_READY_MS = 20_000
MINUTE_MS = 60_000
# The demo finalises a minute ~2 s after it ends: a preview seen now is final within ~62 s.
FINAL_WITHIN_MS = 75_000
# Chromium logs every failed request as a console error ("Failed to load resource: net::ERR_
# CONNECTION_REFUSED", a stream cut by the stopping server: ERR_INCOMPLETE_CHUNKED_ENCODING):
# allowed only while the server is down.
NETWORK_FAILURE = "net::ERR_"

T = TypeVar("T")


class ConnectorProcess:
    """`fxconnector run` on a fixed workdir and port, so it can be stopped and started again."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.workdir = workdir
        self.extra = extra  # more `fxconnector run` flags (e.g. --with-exec)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir.parent / f"{workdir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.announced = ""

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
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
                    *self.extra,
                ],
                stdout=subprocess.PIPE,
                stderr=log,
            )
        self.wait_ready()
        assert self.proc.stdout is not None
        self.announced = self.proc.stdout.readline().decode()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_WITHIN_S
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                assert self.proc.poll() is None, self.stderr()
                try:
                    if http.get(f"{self.base}/api/health/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise AssertionError(f"not ready within {READY_WITHIN_S} s:\n{self.stderr()}")

    def stop(self) -> int:
        """SIGTERM and wait (kill past the budget); the exit code."""
        proc = self.proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_WITHIN_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    def stderr(self) -> str:
        return self.log_path.read_text()[-4000:] if self.log_path.exists() else ""

    def get(self, path: str, **params: Any) -> Any:
        with httpx.Client(timeout=5.0) as http:
            response = http.get(f"{self.base}{path}", params=params)
            response.raise_for_status()
            return response.json()

    def xadd_event(self, event: OhlcvEvent) -> None:
        """Publish one event into the connector's own events stream (its embedded Redis)."""
        client = redis.Redis(unix_socket_path=str(self.workdir / "redis" / "redis.sock"))
        try:
            client.xadd(SurfaceKeys().events, {STREAM_FIELD: encode(event)})
        finally:
            client.close()


@dataclass
class Console:
    """What the page logged: errors fail the test unless they are allowed network failures."""

    messages: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    allow_network_failures: bool = False

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        text = f"{message.text} ({message.location.get('url', '')})"
        if self.allow_network_failures and NETWORK_FAILURE in message.text:
            return
        self.messages.append(text)

    def on_page_error(self, error: Exception) -> None:
        self.page_errors.append(str(error))

    def assert_clean(self) -> None:
        assert self.page_errors == [], self.page_errors
        assert self.messages == [], self.messages


@dataclass
class ChartPage:
    page: Page
    console: Console
    base: str

    def open(self, fragment: str = "") -> None:
        self.page.goto(f"{self.base}/{fragment}")
        self.wait_for(
            "window.__fx && window.__fx.state().loads >= 1 && window.__fx.bars().length > 0"
        )

    def wait_for(self, expression: str, arg: Any = None, timeout_ms: float = PAGE_READY_MS) -> Any:
        """Wait until `expression` is truthy in the page; its value."""
        return self.page.wait_for_function(expression, arg=arg, timeout=timeout_ms).json_value()

    def fx(self, call: str) -> Any:
        return self.page.evaluate(f"window.__fx.{call}")

    def candles(self) -> list[dict[str, Any]]:
        return [point for point in self.fx("bars()") if "open" in point]

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path))
        return path


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        pytest.skip(
            f"Debian's chromium is not installed at {CHROMIUM}: `make test` installs it with "
            "`apt-get install -y chromium` when run as root"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def connector(
    tmp_path_factory: pytest.TempPathFactory, chromium: Path
) -> Iterator[ConnectorProcess]:
    running = ConnectorProcess(tmp_path_factory.mktemp("ui") / "var")
    try:
        running.start()
        assert f"open http://127.0.0.1:{running.port}/" in running.announced
        yield running
    finally:
        if running.proc is not None:
            running.stop()


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def chart(browser: Browser, connector: ConnectorProcess) -> Iterator[ChartPage]:
    context = browser.new_context(viewport={"width": 1400, "height": 800}, timezone_id=TIME_ZONE)
    try:
        page = context.new_page()
        page.set_default_timeout(PAGE_READY_MS)
        console = Console()
        page.on("console", console.on_console)
        page.on("pageerror", console.on_page_error)
        yield ChartPage(page, console, connector.base)
        console.assert_clean()
    finally:
        context.close()


def poll(read: Callable[[], T], done: Callable[[T], bool], timeout_s: float, what: str) -> T:
    """Read until `done` holds (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s (last: {value})"
        time.sleep(0.2)


def assert_chart_matches_book(chart: ChartPage) -> None:
    """Every merged bar is drawn with its own prices, previews translucent, finals solid."""
    # One evaluation: the page merges live events between two calls.
    book_bars, points = chart.page.evaluate("[window.__fx.book(), window.__fx.bars()]")
    book = {bar["open_ms"] // 1000: bar for bar in book_bars}
    candles = {point["time"]: point for point in points}
    assert candles.keys() == book.keys()
    for time_s, point in candles.items():
        bar = book[time_s]
        assert [point[k] for k in ("open", "high", "low", "close")] == [
            bar[k] for k in ("open", "high", "low", "close")
        ]
        assert ("rgba" in point["color"]) == (not bar["complete"])


def assert_server_finals_drawn(
    chart: ChartPage, connector: ConnectorProcess, tf: str, limit: int
) -> None:
    """The newest finals the server has are drawn as finals with its prices (the page may get
    the newest one from the stream a moment after the server has it)."""
    served = connector.get("/api/bars", symbol="EURUSD", tf=tf, limit=limit)["bars"]
    assert len(served) >= min(limit, 70)  # three days of history
    drawn = chart.wait_for(
        """(times) => {
            const finals = new Set(window.__fx.book().filter((b) => b.complete)
                .map((b) => b.open_ms / 1000));
            const bars = window.__fx.bars().filter((p) => finals.has(p.time));
            return times.every((t) => finals.has(t)) && bars;
        }""",
        arg=[bar["open_ms"] // 1000 for bar in served],
    )
    by_time = {point["time"]: point for point in drawn}
    for bar in served:
        point = by_time[bar["open_ms"] // 1000]
        assert [point[k] for k in ("open", "high", "low", "close")] == [
            bar[k] for k in ("open", "high", "low", "close")
        ]


# --- the tests ----------------------------------------------------------------------------------


def test_page_loads_eurusd_1m_candles_without_console_errors(
    chart: ChartPage, connector: ConnectorProcess
) -> None:
    chart.open()
    state = chart.fx("state()")
    assert (state["symbol"], state["tf"], state["utc"]) == ("EURUSD", "1m", True)
    candles, volumes = chart.page.evaluate("[window.__fx.bars(), window.__fx.volumes()]")
    assert len(candles) >= 1500  # 1500 finals asked for, and maybe the live preview
    times = [point["time"] for point in candles]
    assert times == sorted(set(times))
    assert all(t % 60 == 0 for t in times)
    assert [point["time"] for point in volumes] == times
    assert_chart_matches_book(chart)
    assert_server_finals_drawn(chart, connector, "1m", 5)
    chart.wait_for("window.__fx.state().stream === 'open'")
    chart.page.wait_for_selector("#status-body >> text=connected")
    # The summary counts the symbols; the shown symbol's detail comes from /api/status?symbol=.
    chart.page.wait_for_selector("#status-body >> text=Symbols · 3")
    chart.page.wait_for_selector("#status-body >> text=This symbol · EURUSD")
    chart.page.wait_for_selector("#status-body >> text=last 24 h minutes")
    assert chart.page.locator("#banner").is_hidden()
    chart.screenshot("01-eurusd-1m.png")
    # Another symbol: its own detail at once.
    chart.page.select_option("#symbol", "GBPUSD")
    chart.page.wait_for_selector("#status-body >> text=This symbol · GBPUSD")
    chart.page.wait_for_selector("#status-body >> text=Last final bar (open time) · GBPUSD")
    chart.page.wait_for_selector("#status-body >> text=last 24 h minutes")


def test_switches_to_1h(chart: ChartPage, connector: ConnectorProcess) -> None:
    chart.open()
    chart.page.select_option("#tf", "1h")
    chart.wait_for(
        "window.__fx.state().tf === '1h' && window.__fx.state().loads >= 2"
        " && window.__fx.bars().length > 0 && window.__fx.bars().every((p) => p.time % 3600 === 0)"
    )
    assert "tf=1h" in chart.page.url
    assert_server_finals_drawn(chart, connector, "1h", 1500)
    assert_chart_matches_book(chart)
    chart.wait_for("window.__fx.state().stream === 'open'")
    chart.screenshot("02-eurusd-1h.png")


def test_live_preview_updates_the_last_bar(chart: ChartPage) -> None:
    chart.open()
    chart.wait_for("window.__fx.state().stream === 'open'")
    first = chart.candles()[-1]
    # A live preview changes the last bar (its prices, or a new bucket); at a minute's end the
    # last change may be a final instead, so wait for a changed last bar that is a preview.
    held, last = chart.wait_for(
        """(first) => {
            const bars = window.__fx.bars();
            const last = bars[bars.length - 1];
            const book = window.__fx.book();
            const changed = last.time !== first.time || last.close !== first.close
                || last.high !== first.high || last.low !== first.low;
            return changed && !book[book.length - 1].complete && [book[book.length - 1], last];
        }""",
        arg=first,
        timeout_ms=15_000,
    )
    assert held["source"] == "stream"
    assert last["time"] == held["open_ms"] // 1000
    assert last["close"] == held["close"]
    assert last["color"].startswith("rgba")  # previews are translucent
    assert chart.fx("state()")["events"] > 0
    chart.screenshot("03-live-preview.png")


@pytest.mark.timeout(150)
def test_final_replaces_the_preview(chart: ChartPage, connector: ConnectorProcess) -> None:
    chart.open()
    preview = chart.wait_for(
        "(() => { const b = window.__fx.book(); const last = b[b.length - 1];"
        " return !last.complete && last; })()"
    )
    assert preview["source"] == "stream"
    open_ms = preview["open_ms"]
    chart.wait_for(
        """(openMs) => window.__fx.book().some((b) => b.open_ms === openMs && b.complete)""",
        arg=open_ms,
        timeout_ms=FINAL_WITHIN_MS,
    )
    final = next(bar for bar in chart.fx("book()") if bar["open_ms"] == open_ms)
    assert final["source"] == "history"
    assert final["event_ts"] == final["close_ms"]
    drawn = next(point for point in chart.candles() if point["time"] == open_ms // 1000)
    assert not drawn["color"].startswith("rgba")  # drawn solid now
    assert drawn["close"] == final["close"]
    assert drawn["high"] == final["high"]
    served = connector.get(
        "/api/bars", symbol="EURUSD", tf="1m", from_ms=open_ms, to_ms=open_ms + MINUTE_MS
    )["bars"]
    assert [bar["close"] for bar in served] == [final["close"]]
    assert_chart_matches_book(chart)
    chart.screenshot("04-final-replaced-preview.png")


def test_revision_of_an_older_bar_is_drawn_in_place(
    chart: ChartPage, connector: ConnectorProcess
) -> None:
    chart.open()
    chart.wait_for("window.__fx.state().stream === 'open'")
    chart.page.evaluate("window.__sameDocument = true")
    finals = [bar for bar in chart.fx("book()") if bar["complete"]]
    older = finals[-15]  # inside the default view, not the last bar
    range_before = chart.fx("state()")["visibleRange"]
    original = msgspec.convert(older, OhlcvEvent)
    new_high = round(original.high + 0.0005, 5)
    revision = msgspec.structs.replace(original, high=new_high, rev=original.rev + 1)
    connector.xadd_event(revision)
    chart.wait_for(
        """([time, high]) => window.__fx.bars().some((p) => p.time === time && p.high === high)""",
        arg=[original.open_ms // 1000, new_high],
    )
    assert chart.page.evaluate("window.__sameDocument === true")  # no reload
    state = chart.fx("state()")
    assert state["loads"] == 1
    held = next(bar for bar in chart.fx("book()") if bar["open_ms"] == original.open_ms)
    assert (held["high"], held["rev"]) == (new_high, original.rev + 1)
    markers = chart.fx("markers()")
    assert {"time": original.open_ms // 1000, "text": f"r{original.rev + 1}"} in [
        {"time": m["time"], "text": m.get("text")} for m in markers
    ]
    # A historical update does not move the view (the live bar may append one slot meanwhile).
    range_after = state["visibleRange"]
    assert abs(range_after["from"] - range_before["from"]) <= 1
    assert_chart_matches_book(chart)
    chart.screenshot("05-revised-older-bar.png")


def test_missing_older_bars_are_inserted_without_moving_the_view(
    chart: ChartPage, connector: ConnectorProcess
) -> None:
    chart.open()
    chart.wait_for("window.__fx.state().stream === 'open'")
    first = chart.fx("book()")[0]
    # Two real finals from the SSOT, older than the loaded window: the first leaves a gap
    # (drawn as empty slots), the second then fills one of those slots. Neither can be drawn by
    # `update()`: both go through setData with the view restored.
    older = connector.get(
        "/api/bars",
        symbol="EURUSD",
        tf="1m",
        from_ms=first["open_ms"] - 5 * MINUTE_MS,
        to_ms=first["open_ms"],
    )["bars"]
    assert len(older) >= 2, older
    outer, inner = older[0], older[1]
    # Scroll back into history as a user does (drag the chart right): away from the live edge,
    # setData alone would move the view.
    box = chart.page.locator(".pane-chart").first.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4
    chart.page.mouse.move(x, y)
    chart.page.mouse.down()
    chart.page.mouse.move(x + 500, y, steps=10)
    chart.page.mouse.up()
    state = chart.fx("state()")
    assert state["visibleRange"]["to"] < len(chart.fx("bars()")) - 50, state
    left_time = state["visibleTimes"]["from"]
    chart.page.evaluate("window.__sameDocument = true")
    connector.xadd_event(msgspec.convert(outer, OhlcvEvent))
    chart.wait_for(
        "(t) => window.__fx.bars()[0].time === t", arg=outer["open_ms"] // 1000, timeout_ms=10_000
    )
    # The library's time scale: the inserted bar, an empty slot per missing minute, the old first.
    slots = list(range(outer["open_ms"] + MINUTE_MS, first["open_ms"], MINUTE_MS))
    times = [outer["open_ms"] // 1000, *(ms // 1000 for ms in slots), first["open_ms"] // 1000]
    assert [chart.fx(f"indexOf({t})") for t in times] == list(range(len(times)))
    candle_times = {point["time"] for point in chart.candles()}
    assert candle_times.isdisjoint(ms // 1000 for ms in slots)
    assert_view_kept(chart, left_time)
    connector.xadd_event(msgspec.convert(inner, OhlcvEvent))
    chart.wait_for(
        "(t) => window.__fx.bars().some((p) => p.time === t)",
        arg=inner["open_ms"] // 1000,
        timeout_ms=10_000,
    )
    assert [chart.fx(f"indexOf({t})") for t in times] == list(range(len(times)))
    assert_view_kept(chart, left_time)
    assert chart.page.evaluate("window.__sameDocument === true")
    assert chart.fx("state()")["loads"] == 1
    assert_chart_matches_book(chart)


def assert_view_kept(chart: ChartPage, left_time: int) -> None:
    """The bar that was at the view's left edge still is (a live bar appended meanwhile may
    scroll the view by one)."""
    now_left = chart.fx("state()")["visibleTimes"]["from"]
    moved = chart.fx(f"indexOf({now_left})") - chart.fx(f"indexOf({left_time})")
    assert 0 <= moved <= 1, (left_time, now_left)


def test_local_time_toggle_shifts_times(chart: ChartPage) -> None:
    chart.open()
    last_open_ms = chart.fx("book()")[-2]["open_ms"]
    # The page shifts every bar by the browser's offset now (see chart_adapter.js).
    offset = dt.datetime.now(ZoneInfo(TIME_ZONE)).utcoffset()
    assert offset is not None
    assert offset.total_seconds() != 0
    chart.page.click("#tz")
    chart.wait_for("!window.__fx.state().utc")
    assert "Local (UTC+0" in chart.page.inner_text("#tz")
    assert "tz=local" in chart.page.url
    expected = last_open_ms // 1000 + int(offset.total_seconds())
    chart.wait_for(
        "(t) => window.__fx.bars().some((p) => p.time === t && 'open' in p)", arg=expected
    )
    chart.screenshot("06-local-time.png")
    chart.page.click("#tz")
    chart.wait_for(
        "(t) => window.__fx.state().utc && window.__fx.bars().some((p) => p.time === t)",
        arg=last_open_ms // 1000,
    )


@pytest.mark.timeout(150)
def test_lost_connection_banner_and_recovery(chart: ChartPage, connector: ConnectorProcess) -> None:
    chart.open()
    chart.wait_for("window.__fx.state().stream === 'open'")
    banner = chart.page.locator("#banner")
    assert banner.is_hidden()
    chart.console.allow_network_failures = True
    assert connector.stop() == 0
    banner.wait_for(state="visible", timeout=15_000)
    assert "Connection to the server lost" in banner.inner_text()
    chart.wait_for("window.__fx.state().lost && window.__fx.state().stream === 'lost'")
    chart.screenshot("07-connection-lost.png")
    last_id = chart.fx("state()")["lastEventId"]
    connector.start()
    banner.wait_for(state="hidden", timeout=30_000)
    chart.wait_for(
        "(id) => window.__fx.state().stream === 'open' && window.__fx.state().lastEventId !== id",
        arg=last_id,
        timeout_ms=30_000,
    )
    # Caught up: the newest final the server has is drawn, with the server's prices.
    served = poll(
        lambda: connector.get("/api/bars", symbol="EURUSD", tf="1m", limit=30)["bars"],
        lambda bars: bool(bars),
        10,
        "bars after restart",
    )

    def drawn_finals() -> dict[int, dict[str, Any]]:
        return {bar["open_ms"]: bar for bar in chart.fx("book()") if bar["complete"]}

    poll(drawn_finals, lambda held: served[-1]["open_ms"] in held, 15, "newest final drawn")
    held = drawn_finals()
    for bar in served:
        assert held[bar["open_ms"]] == bar
    assert_chart_matches_book(chart)
    chart.console.allow_network_failures = False
    chart.screenshot("08-recovered.png")
