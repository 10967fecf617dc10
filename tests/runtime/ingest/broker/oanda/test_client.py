"""OandaBroker end to end against a local v20 server (tests/.../oanda/v20_server.py).

The silence tests use `watchdog_silence_s=0.5` (OANDA's rule is 10 s) and a fast Backoff so the
whole file runs in seconds; the behaviour does not depend on the numbers. Clocks run in real time
but may be shifted to a chosen weekday, so the calendar says open (Wednesday) or closed
(Saturday) while the server talks in real time. No test measures wall-clock durations: waits are
read from the broker's clock (`StepClock` records every sleep the broker asks for, and the server
stamps arrivals with it), and the rate-limit tests let the clock jump over the broker's sleeps, so
a busy machine can only make a test slower, never fail it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from fxconnector.config.schema import OandaBrokerConfig
from fxconnector.config.secrets import Secret
from fxconnector.core.errors import (
    BadBrokerData,
    BrokerDisconnected,
    ConfigError,
    FxConnectorError,
    TransientIOError,
)
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.status import BrokerState
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import MINUTE_MS, Timeframe, to_ms
from fxconnector.runtime.ingest.broker.oanda.client import OandaBroker, translate_httpx_error
from fxconnector.runtime.ingest.broker.port import BrokerPort, SessionEvent
from fxconnector.runtime.ingest.broker.resilience import Backoff
from tests.conftest import calendar_profile
from tests.runtime.ingest.broker.oanda.v20_server import ServerCandle, V20Server, rfc3339

T = TypeVar("T")

TOKEN = "v20-test-token-5f1c9e0a7b3d4c21-not-real"  # noqa: S105 - a test value
WRONG_TOKEN = "v20-wrong-token-0d2e8a61b4c7f359-not-real"  # noqa: S105 - a test value
ACCOUNT = "101-004-1234567-001"
SYMBOLS = ("EURUSD", "USDJPY")
FIXTURES = Path(__file__).parent / "fixtures"
#: The test silence threshold (OANDA's is 10 s), small to keep the file fast.
SILENCE_S = 0.5


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return to_ms(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC))


WEDNESDAY_NOON = utc(2024, 3, 6, 12)  # fx_ny: open
SATURDAY_NOON = utc(2024, 3, 9, 12)  # fx_ny: closed
HISTORY_START = utc(2024, 2, 20)


class StepClock:
    """Real time moved to start at `start_ms`; every sleep asked of it is recorded.

    With `jump=True` a sleep moves the clock to its end at once instead of waiting: the broker
    sees exactly the time it asked to wait go by, whatever the machine's load. With
    `frozen=True` as well, real time does not move it at all: only the broker's sleeps do, so
    the lengths it asks for are exact (no millisecond of the machine's load between reads).
    """

    def __init__(self, start_ms: int, *, jump: bool = False, frozen: bool = False) -> None:
        self._start_ms = start_ms
        self._t0 = time.monotonic()
        self._jumped_ms = 0
        self._jump = jump
        self._frozen = frozen
        #: (now_ms, until_ms) of every sleep_until, in call order
        self.sleeps: list[tuple[int, int]] = []

    def now_ms(self) -> int:
        real_ms = 0 if self._frozen else int((time.monotonic() - self._t0) * 1000)
        return self._start_ms + self._jumped_ms + real_ms

    def now_s(self) -> float:
        return self.now_ms() / 1000

    def slept_ms(self) -> list[int]:
        """How long each sleep asked for (ms)."""
        return [until - since for since, until in self.sleeps]

    async def sleep_until(self, ts_ms: int) -> None:
        now = self.now_ms()
        self.sleeps.append((now, ts_ms))
        if ts_ms <= now:
            return
        if self._jump:
            self._jumped_ms += ts_ms - now
            await asyncio.sleep(0)
        else:
            await asyncio.sleep((ts_ms - now) / 1000)


class Sessions:
    """Collects a broker's session events in the background."""

    def __init__(self, broker: OandaBroker) -> None:
        self.events: list[SessionEvent] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._collect(broker.session_events()))

    async def _collect(self, events: AsyncIterator[SessionEvent]) -> None:
        async for event in events:
            self.events.append(event)
            self._changed.set()

    @property
    def states(self) -> list[BrokerState]:
        return [event.state for event in self.events]

    async def until(self, done: Callable[[list[BrokerState]], bool], timeout_s: float = 3) -> None:
        async with asyncio.timeout(timeout_s):
            while not done(self.states):
                self._changed.clear()
                await self._changed.wait()

    async def finished(self) -> None:
        """The iterator ended (after STOPPED)."""
        await asyncio.wait_for(self._task, timeout=2)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a test coroutine with a bound on the whole of it."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout=20)

    return asyncio.run(bounded())


async def take(ticks: AsyncIterator[Tick], count: int, timeout_s: float = 3) -> list[Tick]:
    async with asyncio.timeout(timeout_s):
        return [await anext(ticks) for _ in range(count)]


def fast_backoff() -> Backoff:
    return Backoff(base_s=0.01, cap_s=0.02, rng=random.Random(7))


def make(
    server: V20Server,
    *,
    start_ms: int = WEDNESDAY_NOON,
    silence_s: float = 10.0,
    price: str = "B",
    token: str = TOKEN,
    symbols: tuple[str, ...] = SYMBOLS,
    http: httpx.AsyncClient | None = None,
    clock: StepClock | None = None,
) -> OandaBroker:
    assert price in ("B", "A", "M")
    config = OandaBrokerConfig(
        rest_url=server.url,
        stream_url=server.url + "/",
        account_id=ACCOUNT,
        price=price,  # type: ignore[arg-type]
    )
    calendars = {s: calendar_profile("fx_ny").for_symbol(s) for s in symbols}
    return OandaBroker(
        config,
        Secret(token),
        symbols,
        calendars,
        StepClock(start_ms) if clock is None else clock,
        http=http,
        backoff=fast_backoff(),
        watchdog_silence_s=silence_s,
    )


def price(
    instrument: str, at: str, bid: str, ask: str, *, tradeable: bool = True
) -> dict[str, Any]:
    """A v20 PRICE message."""
    return {
        "type": "PRICE",
        "time": at,
        "bids": [{"price": bid, "liquidity": 1000000}, {"price": "1.00000", "liquidity": 5000000}],
        "asks": [{"price": ask, "liquidity": 1000000}, {"price": "9.00000", "liquidity": 5000000}],
        "closeoutBid": bid,
        "closeoutAsk": ask,
        "status": "tradeable" if tradeable else "non-tradeable",
        "tradeable": tradeable,
        "instrument": instrument,
    }


def at_ms(second: int, ms: int) -> int:
    return utc(2024, 3, 6, 14, 30) + second * 1000 + ms


@pytest.fixture(scope="module")
def v20_server() -> Iterator[V20Server]:
    with V20Server(token=TOKEN, account_id=ACCOUNT) as server:
        yield server


@pytest.fixture
def v20(v20_server: V20Server) -> V20Server:
    """The module's server, with nothing scripted or recorded yet."""
    v20_server.reset()
    return v20_server


# -- construction and the port ---------------------------------------------------------------


def test_missing_token_or_account_id_is_a_config_error_naming_the_setting() -> None:
    calendars = {s: calendar_profile("fx_ny").for_symbol(s) for s in SYMBOLS}
    clock = StepClock(WEDNESDAY_NOON)
    good = OandaBrokerConfig(account_id=ACCOUNT)
    for token in (None, Secret(""), Secret("   ")):
        with pytest.raises(ConfigError, match="set FXCONNECTOR_OANDA_TOKEN or oanda_token"):
            OandaBroker(good, token, SYMBOLS, calendars, clock)
    with pytest.raises(ConfigError, match=r"account_id under \[broker.oanda\]"):
        OandaBroker(OandaBrokerConfig(), Secret(TOKEN), SYMBOLS, calendars, clock)
    with pytest.raises(ConfigError, match="cannot map symbol 'US30'"):
        OandaBroker(good, Secret(TOKEN), ("US30",), {"US30": calendars["EURUSD"]}, clock)
    with pytest.raises(ConfigError, match="no calendar for symbol 'GBPUSD'"):
        OandaBroker(good, Secret(TOKEN), ("GBPUSD",), calendars, clock)
    with pytest.raises(ConfigError, match="fix stream_url"):
        OandaBroker(
            OandaBrokerConfig(account_id=ACCOUNT, stream_url="stream-fxpractice.oanda.com"),
            Secret(TOKEN),
            SYMBOLS,
            calendars,
            clock,
        )


def test_the_broker_satisfies_the_port_and_closes_idempotently(v20: V20Server) -> None:
    async def scenario() -> None:
        broker = make(v20)
        port: BrokerPort = broker
        assert port.kind == "oanda"
        with pytest.raises(BrokerDisconnected, match="before connect"):
            await anext(broker.ticks())
        sessions = Sessions(broker)
        ticks = broker.ticks()
        await broker.connect()
        await broker.connect()  # idempotent: still one stream
        await sessions.until(lambda s: BrokerState.CONNECTED in s)
        await broker.close()
        await broker.close()
        await sessions.finished()
        assert sessions.states == [
            BrokerState.CONNECTING,
            BrokerState.CONNECTED,
            BrokerState.STOPPED,
        ]
        assert [t async for t in ticks] == []  # the iterator ends at close
        assert len(v20.requests_of("stream")) == 1
        with pytest.raises(BrokerDisconnected, match="closed"):
            await broker.connect()

    run(scenario())


# -- the pricing stream -------------------------------------------------------------------------


def test_ticks_arrive_with_the_brokers_time_on_one_subscription(v20: V20Server) -> None:
    async def scenario() -> None:
        broker = make(v20)
        sessions = Sessions(broker)
        ticks = broker.ticks()
        try:
            await broker.connect()
            await sessions.until(lambda s: BrokerState.CONNECTED in s)
            v20.send(
                price("EUR_USD", "2024-03-06T14:30:05.123456789Z", "1.08995", "1.09008"),
                {"type": "HEARTBEAT", "time": "2024-03-06T14:30:07.004533176Z"},
                price("USD_JPY", "2024-03-06T14:30:07.250000000Z", "149.882", "149.897"),
            )
            got = await take(ticks, 2)
        finally:
            await broker.close()
        assert got == [
            Tick("EURUSD", 1.08995, 1.09008, at_ms(5, 123), 1000000.0, 1000000.0),
            Tick("USDJPY", 149.882, 149.897, at_ms(7, 250), 1000000.0, 1000000.0),
        ]
        [request] = v20.requests_of("stream")
        assert request.method == "GET"
        assert request.path == f"/v3/accounts/{ACCOUNT}/pricing/stream"
        assert request.query == {"instruments": "EUR_USD,USD_JPY"}
        assert request.authorization == f"Bearer {TOKEN}"
        connected = [e for e in sessions.events if e.state is BrokerState.CONNECTED]
        assert [e.detail for e in connected] == ["EUR_USD,USD_JPY"]
        assert (broker.parse_errors, broker.reconnects, broker.rate_limited) == (0, 0, 0)

    run(scenario())


HEARTBEAT_SILENCE_S = 3.0


def test_heartbeats_keep_it_alive_when_closed_but_heartbeat_silence_is_always_a_fault(
    v20: V20Server,
) -> None:
    async def scenario() -> None:
        # Heartbeats every 0.1 s against a 3 s watchdog: only a stall of the whole machine
        # longer than ~3 s could look like silence (the default 0.5 s would be ~0.4 s).
        v20.heartbeat_s = 0.1
        broker = make(v20, start_ms=SATURDAY_NOON, silence_s=HEARTBEAT_SILENCE_S)
        sessions = Sessions(broker)
        try:
            await broker.connect()
            await sessions.until(lambda s: BrokerState.CONNECTED in s)
            await asyncio.sleep(2.0)  # no prices (closed market), heartbeats only
            assert sessions.states == [BrokerState.CONNECTING, BrokerState.CONNECTED]
            assert len(v20.requests_of("stream")) == 1
            v20.heartbeat_s = None  # now nothing at all, even on a Saturday
            await sessions.until(lambda s: BrokerState.STALE in s, timeout_s=10)
            await sessions.until(lambda s: s.count(BrokerState.CONNECTED) == 2, timeout_s=10)
        finally:
            await broker.close()
        stale = [e for e in sessions.events if e.state is BrokerState.STALE]
        assert [e.detail for e in stale] == ["no message for 3 s"]
        second = v20.requests_of("stream")[1]
        assert second.query == {"instruments": "EUR_USD,USD_JPY"}
        assert broker.reconnects == 1

    run(scenario())


def test_silence_while_open_reconnects_and_resubscribes_every_instrument(v20: V20Server) -> None:
    async def scenario() -> None:
        clock = StepClock(WEDNESDAY_NOON)
        broker = make(v20, silence_s=SILENCE_S, clock=clock)
        sessions = Sessions(broker)
        ticks = broker.ticks()
        try:
            await broker.connect()
            await sessions.until(lambda s: BrokerState.CONNECTED in s)
            sent_ms = clock.now_ms()  # the last message cannot arrive before it is sent
            v20.send(price("EUR_USD", "2024-03-06T14:30:05.000000000Z", "1.08995", "1.09008"))
            first = await take(ticks, 1)
            await sessions.until(lambda s: BrokerState.STALE in s)
            await sessions.until(lambda s: s.count(BrokerState.CONNECTED) == 2)
            # the new connection delivers (the old one is gone)
            v20.send(price("USD_JPY", "2024-03-06T14:30:06.000000000Z", "149.882", "149.897"))
            second = await take(ticks, 1)
        finally:
            await broker.close()
        await sessions.finished()
        assert [t.symbol for t in first + second] == ["EURUSD", "USDJPY"]
        # stale only once the broker's clock saw the whole silence after the last message
        stale = next(e for e in sessions.events if e.state is BrokerState.STALE)
        assert stale.ts_ms - sent_ms >= SILENCE_S * 1000
        assert stale.detail == f"no message for {SILENCE_S:g} s"
        assert sessions.states == [
            BrokerState.CONNECTING,
            BrokerState.CONNECTED,
            BrokerState.STALE,
            BrokerState.CONNECTING,
            BrokerState.CONNECTED,
            BrokerState.STOPPED,
        ]
        streams = v20.requests_of("stream")
        assert [r.query for r in streams] == [{"instruments": "EUR_USD,USD_JPY"}] * 2
        assert (broker.reconnects, broker.parse_errors) == (1, 0)

    run(scenario())


def test_heartbeats_without_prices_while_open_are_stale(v20: V20Server) -> None:
    async def scenario() -> None:
        v20.heartbeat_s = 0.1
        broker = make(v20, silence_s=SILENCE_S)
        sessions = Sessions(broker)
        try:
            await broker.connect()
            await sessions.until(lambda s: BrokerState.STALE in s)
        finally:
            await broker.close()
        stale = [e for e in sessions.events if e.state is BrokerState.STALE]
        assert stale[0].detail == "no price for 0.5 s while the market is open"

    run(scenario())


def test_a_stream_that_ends_or_breaks_is_reconnected(v20: V20Server) -> None:
    async def scenario() -> None:
        broker = make(v20)
        sessions = Sessions(broker)
        try:
            await broker.connect()
            await sessions.until(lambda s: BrokerState.CONNECTED in s)
            v20.end_stream()
            await sessions.until(lambda s: s.count(BrokerState.CONNECTED) == 2)
            v20.abort_stream()
            await sessions.until(lambda s: s.count(BrokerState.CONNECTED) == 3)
        finally:
            await broker.close()
        lost = [e.detail for e in sessions.events if e.state is BrokerState.DISCONNECTED]
        assert lost[0] == "OANDA ended the pricing stream"
        assert lost[1].startswith("OANDA pricing stream failed (RemoteProtocolError")
        assert len(v20.requests_of("stream")) == 3
        assert broker.reconnects == 2

    run(scenario())


def test_at_most_two_new_connections_per_second(v20: V20Server) -> None:
    async def scenario() -> None:
        v20.fail_next("stream", 503, times=3, message="Service unavailable")
        clock = StepClock(WEDNESDAY_NOON, jump=True, frozen=True)
        v20.now_s = clock.now_s  # arrivals on the broker's clock
        broker = make(v20, clock=clock)
        sessions = Sessions(broker)
        try:
            await broker.connect()
            await sessions.until(lambda s: s.count(BrokerState.CONNECTED) == 1, timeout_s=5)
        finally:
            await broker.close()
        arrivals = [r.at_s for r in v20.requests_of("stream")]
        assert len(arrivals) == 4
        # Never a third opening within one second of the first of two (on the broker's clock).
        assert arrivals[2] - arrivals[0] >= 1.0
        assert arrivals[3] - arrivals[1] >= 1.0
        # The backoff asks 10-20 ms: the second attempt follows the first after it alone; the
        # gate then waits out the rest of the second, never longer.
        slept = clock.slept_ms()
        assert slept[0] <= 20, slept
        assert any(20 < ms <= 1000 for ms in slept), slept
        assert max(slept) <= 1000, slept
        lost = [e.detail for e in sessions.events if e.state is BrokerState.DISCONNECTED]
        assert lost == ["OANDA pricing stream failed (503: Service unavailable)"] * 3
        assert broker.reconnects == 3

    run(scenario())


def test_a_429_on_the_stream_waits_for_retry_after(v20: V20Server) -> None:
    async def scenario() -> None:
        v20.fail_next("stream", 429, retry_after="1", message="Rate limit violation")
        clock = StepClock(WEDNESDAY_NOON, jump=True, frozen=True)
        v20.now_s = clock.now_s
        broker = make(v20, clock=clock)
        sessions = Sessions(broker)
        try:
            await broker.connect()
            await sessions.until(lambda s: BrokerState.CONNECTED in s)
        finally:
            await broker.close()
        first, second = v20.requests_of("stream")
        assert second.at_s - first.at_s >= 1.0
        # Retry-After (1 s), not the 10 ms backoff
        assert [ms for ms in clock.slept_ms() if ms > 0] == [1000], clock.slept_ms()
        assert broker.rate_limited == 1
        lost = [e.detail for e in sessions.events if e.state is BrokerState.DISCONNECTED]
        assert lost == ["OANDA rate limit on the pricing stream (429: Rate limit violation)"]

    run(scenario())


def test_a_401_on_the_stream_is_a_fatal_config_error(v20: V20Server) -> None:
    async def scenario() -> None:
        broker = make(v20, token=WRONG_TOKEN)
        sessions = Sessions(broker)
        try:
            await broker.connect()
            with pytest.raises(ConfigError) as caught:
                await take(broker.ticks(), 1)
            await asyncio.sleep(0.2)  # time enough for a retry, which must not come
        finally:
            await broker.close()
        await sessions.finished()
        message = str(caught.value)
        assert message.startswith("OANDA rejected the token (401: Insufficient authorization")
        assert message.endswith("set FXCONNECTOR_OANDA_TOKEN or oanda_token in the secrets file")
        assert WRONG_TOKEN not in message
        assert len(v20.requests_of("stream")) == 1
        assert sessions.states[-2:] == [BrokerState.DISCONNECTED, BrokerState.STOPPED]
        assert sessions.events[-2].detail.startswith("fatal: OANDA rejected the token (401")

    run(scenario())


def test_bad_untradeable_and_repeated_prices_are_counted_and_skipped_without_reconnect(
    v20: V20Server,
) -> None:
    async def scenario() -> None:
        bad = (FIXTURES / "pricing_stream_bad.jsonl").read_text().splitlines()
        good = price("EUR_USD", "2024-03-06T14:30:10.000000000Z", "1.08995", "1.09008")
        broker = make(v20, silence_s=SILENCE_S)
        ticks = broker.ticks()
        try:
            await broker.connect()
            v20.send(
                *bad,
                price("EUR_USD", "2024-03-06T14:30:09.000000000Z", "1.1", "1.2", tradeable=False),
                price("GBP_USD", "2024-03-06T14:30:09.500000000Z", "1.26991", "1.27004"),
                good,
                good,  # a repeated price (a reconnect snapshot) is not a new tick
                price("USD_JPY", "2024-03-06T14:30:11.000000000Z", "149.882", "149.897"),
            )
            got = await take(ticks, 2)
        finally:
            await broker.close()
        assert [(t.symbol, t.ts_ms) for t in got] == [
            ("EURUSD", at_ms(10, 0)),
            ("USDJPY", at_ms(11, 0)),
        ]
        assert broker.parse_errors == len(bad) + 1 == 15  # + a price for an unsubscribed symbol
        assert broker.error_samples[-1] == "a price of GBPUSD, which is not subscribed"
        assert len(broker.error_samples) == 10  # a bounded sample
        assert (broker.not_tradeable, broker.duplicate_prices) == (1, 1)
        assert broker.reconnects == 0
        assert len(v20.requests_of("stream")) == 1

    run(scenario())


# -- candles ------------------------------------------------------------------------------------


def ohlc(value: float) -> tuple[str, str, str, str]:
    return (
        f"{value:.5f}",
        f"{value + 0.0002:.5f}",
        f"{value - 0.0001:.5f}",
        f"{value + 0.0001:.5f}",
    )


def server_candles(
    start_ms: int, minutes: int, *, quiet: set[int], incomplete: set[int]
) -> list[ServerCandle]:
    out = []
    for i in range(minutes):
        if i in quiet:
            continue
        base = 1.08 + (i % 997) * 1e-5
        out.append(
            ServerCandle(
                open_ms=start_ms + i * MINUTE_MS,
                volume=i % 50 + 1,
                complete=i not in incomplete,
                bid=ohlc(base),
                ask=ohlc(base + 0.00012),
                mid=ohlc(base + 0.00006),
            )
        )
    return out


def expected_bars(symbol: str, candles: list[ServerCandle], side: str) -> list[OhlcvEvent]:
    out = []
    for candle in candles:
        if not candle.complete:
            continue
        o, h, low, c = (float(x) for x in getattr(candle, side))
        out.append(
            OhlcvEvent(
                symbol=symbol,
                tf=Timeframe.M1,
                open_ms=candle.open_ms,
                close_ms=candle.open_ms + 59_999,
                open=o,
                high=h,
                low=low,
                close=c,
                volume=candle.volume,
                tick_count=candle.volume,
                complete=True,
                source=Source.HISTORY,
                event_ts=candle.open_ms + 59_999,
                rev=0,
            )
        )
    return out


def test_history_pages_12000_minutes_in_three_requests(v20: V20Server) -> None:
    # 4999 ends the first page, 11999 the range; 12000.. lie past it
    candles = server_candles(
        HISTORY_START, 12_010, quiet={17, 5000, 9_999}, incomplete={4_999, 11_999}
    )
    v20.set_candles("EUR_USD", candles)

    async def scenario() -> list[OhlcvEvent]:
        broker = make(v20)
        try:
            answer = await broker.history_1m(
                "EURUSD", HISTORY_START, HISTORY_START + 12_000 * MINUTE_MS
            )
            # the incomplete candles are unfinished minutes, never quiet
            assert answer.unfinished == [
                HISTORY_START + 4_999 * MINUTE_MS,
                HISTORY_START + 11_999 * MINUTE_MS,
            ]
            return answer.bars
        finally:
            await broker.close()

    bars = run(scenario())
    in_range = [c for c in candles if c.open_ms < HISTORY_START + 12_000 * MINUTE_MS]
    assert bars == expected_bars("EURUSD", in_range, "bid")
    assert len(bars) == 12_000 - 3 - 2
    assert len({b.open_ms for b in bars}) == len(bars)
    requests = v20.requests_of("candles")
    assert [r.path for r in requests] == ["/v3/instruments/EUR_USD/candles"] * 3
    assert [r.query for r in requests] == [
        {
            "granularity": "M1",
            "price": "B",
            "from": rfc3339(start)[:19] + "Z",
            "to": rfc3339(end)[:19] + "Z",
        }
        for start, end in [
            (HISTORY_START, HISTORY_START + 5_000 * MINUTE_MS),
            (HISTORY_START + 5_000 * MINUTE_MS, HISTORY_START + 10_000 * MINUTE_MS),
            (HISTORY_START + 10_000 * MINUTE_MS, HISTORY_START + 12_000 * MINUTE_MS),
        ]
    ]
    assert all(r.authorization == f"Bearer {TOKEN}" for r in requests)


def test_history_takes_the_price_component_and_bars_opening_from_from_ms(v20: V20Server) -> None:
    candles = server_candles(HISTORY_START, 5, quiet=set(), incomplete=set())
    v20.set_candles("USD_JPY", candles)

    async def scenario() -> list[OhlcvEvent]:
        broker = make(v20, price="M")
        try:
            # from 00:00:30: the bar opening at 00:00 is not asked for
            answer = await broker.history_1m(
                "USDJPY", HISTORY_START + 30_000, HISTORY_START + 3 * MINUTE_MS
            )
            return answer.bars
        finally:
            await broker.close()

    assert run(scenario()) == expected_bars("USDJPY", candles[1:3], "mid")
    [request] = v20.requests_of("candles")
    assert request.query["price"] == "M"
    assert request.query["from"] == "2024-02-20T00:00:30Z"


def test_history_never_asks_past_the_clocks_now(v20: V20Server) -> None:
    v20.set_candles("EUR_USD", [])

    async def scenario() -> tuple[list[OhlcvEvent], list[OhlcvEvent]]:
        broker = make(v20, start_ms=WEDNESDAY_NOON)
        try:
            past_now = await broker.history_1m(
                "EURUSD", WEDNESDAY_NOON - MINUTE_MS, WEDNESDAY_NOON + 3_600_000
            )
            future = await broker.history_1m(
                "EURUSD", WEDNESDAY_NOON + 60_000, WEDNESDAY_NOON + 120_000
            )
            return past_now.bars, future.bars
        finally:
            await broker.close()

    assert run(scenario()) == ([], [])
    [request] = v20.requests_of("candles")  # the future range sent nothing
    to_ms_sent = to_ms(dt.datetime.fromisoformat(request.query["to"]))
    assert WEDNESDAY_NOON <= to_ms_sent < WEDNESDAY_NOON + 5_000


def test_the_server_refuses_more_than_5000_candles_like_oanda(v20: V20Server) -> None:
    v20.set_candles("EUR_USD", server_candles(HISTORY_START, 10, quiet=set(), incomplete=set()))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = v20.url + "/v3/instruments/EUR_USD/candles"
    wide = {"granularity": "M1", "from": "2024-02-20T00:00:00Z", "to": "2024-02-23T11:21:00Z"}
    with httpx.Client() as client:
        refused = [
            client.get(url, params=wide, headers=headers),  # 5001 minutes
            client.get(url, params={"granularity": "M1", "count": "5001"}, headers=headers),
        ]
        exact = client.get(url, params={**wide, "to": "2024-02-23T11:20:00Z"}, headers=headers)
    assert [(r.status_code, r.json()) for r in refused] == [
        (400, {"errorMessage": "Maximum value for 'count' exceeded"})
    ] * 2
    assert exact.status_code == 200
    assert len(exact.json()["candles"]) == 10


def test_history_429_backs_off_for_retry_after_then_succeeds(v20: V20Server) -> None:
    candles = server_candles(HISTORY_START, 3, quiet=set(), incomplete=set())
    v20.set_candles("EUR_USD", candles)
    v20.fail_next("candles", 429, retry_after="1", message="Rate limit violation")

    clock = StepClock(WEDNESDAY_NOON, jump=True, frozen=True)
    v20.now_s = clock.now_s

    async def scenario() -> list[OhlcvEvent]:
        broker = make(v20, clock=clock)
        try:
            answer = await broker.history_1m("EURUSD", HISTORY_START, HISTORY_START + 3 * MINUTE_MS)
            assert broker.rate_limited == 1
            return answer.bars
        finally:
            await broker.close()

    assert run(scenario()) == expected_bars("EURUSD", candles, "bid")
    first, second = v20.requests_of("candles")
    assert first.query == second.query
    assert second.at_s - first.at_s >= 1.0
    assert clock.slept_ms() == [1000]  # Retry-After, not the backoff


def test_history_5xx_is_retried_a_bounded_number_of_times(v20: V20Server) -> None:
    candles = server_candles(HISTORY_START, 2, quiet=set(), incomplete=set())
    v20.set_candles("EUR_USD", candles)
    v20.fail_next("candles", 503, times=3, message="Service unavailable")

    async def scenario() -> tuple[BaseException, list[OhlcvEvent]]:
        broker = make(v20)
        try:
            with pytest.raises(TransientIOError) as caught:
                await broker.history_1m("EURUSD", HISTORY_START, HISTORY_START + 2 * MINUTE_MS)
            later = await broker.history_1m("EURUSD", HISTORY_START, HISTORY_START + 2 * MINUTE_MS)
            return caught.value, later.bars
        finally:
            await broker.close()

    error, later = run(scenario())
    assert isinstance(error, BrokerDisconnected)
    assert str(error) == (
        "OANDA candles for EUR_USD: gave up after 3 tries: "
        "OANDA candles request for EUR_USD failed (503: Service unavailable)"
    )
    assert len(v20.requests_of("candles")) == 4
    assert later == expected_bars("EURUSD", candles, "bid")


def test_history_errors_that_are_not_transient(v20: V20Server) -> None:
    v20.set_candles("EUR_USD", server_candles(HISTORY_START, 2, quiet=set(), incomplete=set()))

    async def scenario() -> list[FxConnectorError]:
        broker = make(v20, symbols=("EURUSD", "GBPUSD"))  # the server has no GBP_USD
        errors: list[FxConnectorError] = []
        try:
            for symbol in ("GBPUSD", "USDCHF"):
                with pytest.raises(ConfigError) as config_error:
                    await broker.history_1m(symbol, HISTORY_START, HISTORY_START + MINUTE_MS)
                errors.append(config_error.value)
            v20.fail_next("candles", 400, message="Invalid value specified for 'from'")
            with pytest.raises(BadBrokerData) as bad_data:
                await broker.history_1m("EURUSD", HISTORY_START, HISTORY_START + MINUTE_MS)
            errors.append(bad_data.value)
        finally:
            await broker.close()
        return errors

    errors = run(scenario())
    assert [str(e) for e in errors] == [
        "OANDA refused the candles request for GBP_USD (400: Invalid value specified for "
        "'instrument'): check broker.symbols, account_id under [broker.oanda] in the config "
        "file and the URLs under [broker.oanda]",
        "oanda broker: unknown symbol 'USDCHF' (known: EURUSD, GBPUSD)",
        "OANDA refused the candles request for EUR_USD (400: Invalid value specified for 'from')",
    ]
    assert len(v20.requests_of("candles")) == 2  # no retries; USDCHF sent nothing


def test_history_401_is_a_config_error_without_the_token(v20: V20Server) -> None:
    v20.set_candles("EUR_USD", [])

    async def scenario() -> ConfigError:
        broker = make(v20, token=WRONG_TOKEN)
        try:
            with pytest.raises(ConfigError) as caught:
                await broker.history_1m("EURUSD", HISTORY_START, HISTORY_START + MINUTE_MS)
            return caught.value
        finally:
            await broker.close()

    error = run(scenario())
    assert str(error) == (
        "OANDA rejected the token (401: Insufficient authorization to perform request.): "
        "set FXCONNECTOR_OANDA_TOKEN or oanda_token in the secrets file"
    )
    assert WRONG_TOKEN not in "".join(traceback.format_exception(error))
    assert len(v20.requests_of("candles")) == 1  # not retried


def test_history_sends_one_request_at_a_time(v20: V20Server) -> None:
    candles = server_candles(HISTORY_START, 6, quiet=set(), incomplete=set())
    v20.set_candles("EUR_USD", candles)
    v20.candles_delay_s = 0.1

    async def scenario() -> list[list[OhlcvEvent]]:
        broker = make(v20)
        try:
            answers = list(
                await asyncio.gather(
                    *(
                        broker.history_1m(
                            "EURUSD",
                            HISTORY_START + i * MINUTE_MS,
                            HISTORY_START + (i + 2) * MINUTE_MS,
                        )
                        for i in range(3)
                    )
                )
            )
            return [answer.bars for answer in answers]
        finally:
            await broker.close()

    results = run(scenario())
    bars = expected_bars("EURUSD", candles, "bid")
    assert results == [bars[0:2], bars[1:3], bars[2:4]]
    assert len(v20.requests_of("candles")) == 3
    assert v20.max_candles_in_flight == 1


# -- errors and secrets -------------------------------------------------------------------------


def _request() -> httpx.Request:
    return httpx.Request("GET", "https://api-fxpractice.oanda.com/v3/instruments/EUR_USD/candles")


@pytest.mark.parametrize(
    ("error", "expected", "says"),
    [
        (httpx.ConnectError("refused"), BrokerDisconnected, "failed (ConnectError: refused)"),
        (httpx.ConnectTimeout("slow"), BrokerDisconnected, "timed out (ConnectTimeout)"),
        (httpx.ReadTimeout("slow"), BrokerDisconnected, "timed out (ReadTimeout)"),
        (httpx.WriteTimeout("slow"), BrokerDisconnected, "timed out (WriteTimeout)"),
        (httpx.PoolTimeout("slow"), BrokerDisconnected, "timed out (PoolTimeout)"),
        (httpx.ReadError("reset"), BrokerDisconnected, "failed (ReadError: reset)"),
        (httpx.WriteError("pipe"), BrokerDisconnected, "failed (WriteError: pipe)"),
        (httpx.CloseError("x"), BrokerDisconnected, "failed (CloseError: x)"),
        (httpx.RemoteProtocolError("peer"), BrokerDisconnected, "failed (RemoteProtocolError"),
        (httpx.LocalProtocolError("us"), BrokerDisconnected, "failed (LocalProtocolError"),
        (httpx.ProxyError("proxy"), BrokerDisconnected, "failed (ProxyError: proxy)"),
        (httpx.DecodingError("gzip"), BrokerDisconnected, "failed (DecodingError: gzip)"),
        (httpx.TooManyRedirects("loop"), BrokerDisconnected, "failed (TooManyRedirects"),
        (httpx.UnsupportedProtocol("ftp"), ConfigError, "fix rest_url under [broker.oanda]"),
        (httpx.InvalidURL("bad"), ConfigError, "fix rest_url under [broker.oanda]"),
        (
            httpx.HTTPStatusError("x", request=_request(), response=httpx.Response(503)),
            BrokerDisconnected,
            "failed (503)",
        ),
        (
            httpx.HTTPStatusError("x", request=_request(), response=httpx.Response(401)),
            ConfigError,
            "set FXCONNECTOR_OANDA_TOKEN",
        ),
    ],
)
def test_every_httpx_error_is_translated(
    error: httpx.HTTPError | httpx.InvalidURL, expected: type[FxConnectorError], says: str
) -> None:
    translated = translate_httpx_error(error, "candles request for EUR_USD", "rest_url")
    assert type(translated) is expected
    assert says in str(translated)


def test_an_injected_http_client_is_left_open(v20: V20Server) -> None:
    v20.set_candles("EUR_USD", server_candles(HISTORY_START, 1, quiet=set(), incomplete=set()))

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            broker = make(v20, http=http)
            answer = await broker.history_1m("EURUSD", HISTORY_START, HISTORY_START + MINUTE_MS)
            await broker.close()
            assert len(answer.bars) == 1
            assert not http.is_closed

    run(scenario())


def test_secrets_never_appear_in_logs_repr_events_or_exceptions(
    v20: V20Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    v20.set_candles("EUR_USD", server_candles(HISTORY_START, 2, quiet=set(), incomplete=set()))
    texts: list[str] = []

    async def scenario() -> None:
        good = make(v20, silence_s=SILENCE_S)
        bad = make(v20, token=WRONG_TOKEN)
        sessions = [Sessions(good), Sessions(bad)]
        try:
            await good.connect()
            await bad.connect()
            await sessions[0].until(lambda s: BrokerState.CONNECTED in s)
            v20.fail_next("candles", 429, retry_after="0")
            await good.history_1m("EURUSD", HISTORY_START, HISTORY_START + 2 * MINUTE_MS)
            v20.send("{not json", price("EUR_USD", "2024-03-06T14:30:05Z", "1.1", "1.2"))
            await take(good.ticks(), 1)
            await sessions[0].until(lambda s: BrokerState.STALE in s)  # and reconnects
            with pytest.raises(ConfigError) as from_ticks:
                await take(bad.ticks(), 1)
            with pytest.raises(ConfigError) as from_history:
                await bad.history_1m("EURUSD", HISTORY_START, HISTORY_START + MINUTE_MS)
            for caught in (from_ticks, from_history):
                texts.append("".join(traceback.format_exception(caught.value)))
            texts.extend([repr(good), repr(bad), *good.error_samples])
        finally:
            await good.close()
            await bad.close()
        texts.extend(e.detail for s in sessions for e in s.events)

    run(scenario())
    logged = caplog.text
    assert "oanda.session" in logged  # the logs were captured, so the check below means something
    assert "oanda.bad_data" in logged
    for text in [logged, *texts]:
        assert TOKEN not in text
        assert WRONG_TOKEN not in text
    assert any("401" in text for text in texts)
