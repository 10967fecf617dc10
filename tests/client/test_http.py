"""The HTTP client against the real server (`fxconnector run`, sim broker, embedded Redis):
one window, frames, errors, and following the stream across a server restart."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pandas as pd
import polars as pl
import pytest

from fxconnector.client import Backoff, Change, ChangeKind, HttpClient, fetch_bars
from fxconnector.core.errors import ConfigError, SurfaceUnavailable
from fxconnector.core.time_geom import Timeframe
from tests.app.connector import Connector
from tests.redis_server import free_port

CONFIG = (
    '[calendar]\nprofile = "always_open"\n'  # the test must not depend on the day of the week
    '[broker]\nkind = "sim"\nsymbols = ["EURUSD", "GBPUSD"]\nstartup_lookback_mins = 120\n'
    "[broker.sim]\nticks_per_minute = 600\n"
)
M1 = Timeframe.M1
M5 = Timeframe.M5


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def connector(tmp_path: Path) -> Iterator[Connector]:
    running = Connector(tmp_path / "var", "--config", str(config_file(tmp_path)))
    try:
        yield running
    finally:
        running.cleanup()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_fetch_bars_is_the_api_window_and_frames_keep_its_rows(connector: Connector) -> None:
    connector.wait_ready()
    tail = httpx.get(f"{connector.base}/api/bars", params={"symbol": "EURUSD", "tf": "1m"}).json()
    first, last = tail["bars"][0]["open_ms"], tail["bars"][-1]["open_ms"]
    assert last > first
    window = fetch_bars(connector.base, "EURUSD", "1m", from_ms=first, to_ms=last + 1)
    raw = httpx.get(
        f"{connector.base}/api/bars",
        params={"symbol": "EURUSD", "tf": "1m", "from_ms": first, "to_ms": last + 1},
    ).json()
    assert [msgspec.to_builtins(bar) for bar in window.finals] == raw["bars"]
    assert window.symbol == "EURUSD"
    assert window.tf is M1

    frame = window.to_pandas()
    finals = frame[frame["complete"]]
    assert len(finals) == len(raw["bars"])
    assert str(frame["open_ms"].dtype) == "datetime64[ms, UTC]"
    assert str(frame["close"].dtype) == "float64"
    assert finals["open_ms"].iloc[0] == pd.Timestamp(first, unit="ms", tz="UTC")
    assert finals["close"].tolist() == [bar["close"] for bar in raw["bars"]]
    assert list(frame.columns) == list(raw["bars"][0])

    polars_frame = window.to_polars()
    assert polars_frame.schema["open_ms"] == pl.Datetime("ms", "UTC")
    assert polars_frame.schema["high"] == pl.Float64
    assert polars_frame.filter(pl.col("complete"))["tick_count"].to_list() == [
        bar["tick_count"] for bar in raw["bars"]
    ]

    with pytest.raises(ConfigError, match=r"40[04]|422"):
        fetch_bars(connector.base, "NOSUCH", "1m")
    with pytest.raises(ConfigError, match="timeframe"):
        fetch_bars(connector.base, "EURUSD", "2m")
    with pytest.raises(SurfaceUnavailable):
        fetch_bars(f"http://127.0.0.1:{free_port()}", "EURUSD", "1m", timeout_s=2.0)

    async def first_change(client: HttpClient) -> Change:
        async with client:
            async for change in client.changes():
                return change
        raise AssertionError("the stream ended")

    # A refused request is the caller's to fix: raised at once, never retried.
    with pytest.raises(ConfigError, match=r"unknown_symbol|404"):
        asyncio.run(first_change(HttpClient(connector.base, "NOSUCH")))
    # A server that never answers: given up after max_failures attempts.
    dead = HttpClient(
        f"http://127.0.0.1:{free_port()}",
        "EURUSD",
        backoff=Backoff(initial_s=0.01, cap_s=0.02, max_failures=3),
        timeout_s=2.0,
    )
    with pytest.raises(SurfaceUnavailable):
        asyncio.run(first_change(dead))
    assert dead.stats.bootstraps == 0


def _server_finals(base: str, tf: Timeframe, from_ms: int, to_ms: int) -> list[object]:
    window = fetch_bars(base, "EURUSD", tf, from_ms=from_ms, to_ms=to_ms, limit=5000)
    return [msgspec.to_builtins(bar) for bar in window.finals]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_follow_resumes_across_a_server_restart_without_duplicates_or_gaps(
    tmp_path: Path,
) -> None:
    config = config_file(tmp_path)
    workdir = tmp_path / "var"
    first = Connector(workdir, "--config", str(config))
    second: Connector | None = None
    try:
        first.wait_ready()
        changes: list[Change] = []

        async def scenario() -> HttpClient:
            nonlocal second
            client = HttpClient(
                first.base, "EURUSD", ["1m", "5m"], backoff=Backoff(initial_s=0.05, cap_s=0.5)
            )
            await client.bootstrap()
            before_restart_ms = client.book.newest_final_ms("EURUSD", M1)
            assert before_restart_ms is not None

            async def follow() -> None:
                async for change in client.changes():
                    changes.append(change)

            task = asyncio.create_task(follow())
            try:
                await _until(lambda: any(not c.event.complete for c in changes), "a live preview")
                assert await asyncio.to_thread(first.stop) == 0
                second = await asyncio.to_thread(
                    Connector, workdir, "--config", str(config), port=first.port
                )
                await asyncio.to_thread(second.wait_ready)
                # A final the restarted server made, arriving through the resumed stream.
                await _until(
                    lambda: any(
                        c.event.complete
                        and c.event.tf is M1
                        and c.event.open_ms > before_restart_ms + 60_000
                        for c in changes
                    ),
                    "a final after the restart",
                    within_s=180.0,
                )
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await client.aclose()
            return client

        client = asyncio.run(scenario())
        assert second is not None
        assert client.stats.bootstraps >= 2
        assert client.stats.reconnects >= 1
        # No duplicates: every change is a different event (a redelivered one is ignored).
        events = Counter(msgspec.json.encode(change.event) for change in changes)
        assert max(events.values()) == 1
        # The live candle never collapsed: no preview replaced a preview with more ticks.
        for change in changes:
            if change.kind is ChangeKind.REPLACED and not change.event.complete:
                assert change.previous is not None
                assert change.event.tick_count >= change.previous.tick_count
        # No gaps: the client's finals are the restarted server's over the client's whole span.
        for tf in (M1, M5):
            held = client.book.finals("EURUSD", tf)
            assert held
            span = (held[0].open_ms, held[-1].open_ms + 1)
            assert [msgspec.to_builtins(bar) for bar in held] == _server_finals(
                second.base, tf, *span
            ), tf
    finally:
        first.cleanup()
        if second is not None:
            second.cleanup()


async def _until(check: object, what: str, within_s: float = 60.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"no {what} within {within_s} s"
        await asyncio.sleep(0.1)
