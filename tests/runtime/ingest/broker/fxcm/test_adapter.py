"""FxcmBroker end to end: the real bridge (under this Python) against the stand-in SDK.

Every test starts `bridge.py` as a subprocess through FxcmBroker with `standin/` and `src` on its
PYTHONPATH; the stand-in serves fxconnector's sim TickGenerator on wall-clock time with an
always-open calendar, so ticks and history are checked exactly against the generator. Faults are
switched on through the stand-in's control file while the bridge runs.

Kept fast on purpose: the silence watchdog is 1 s (30 s in production), backoffs are 0.05-0.5 s,
the stuck-history timeout 1.5 s. Every wait is bounded; every broker is closed (which stops its
bridge) in a `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import msgspec
import pytest

import fxconnector
from fxconnector.config.schema import FxcmBrokerConfig
from fxconnector.config.secrets import Secret, Secrets
from fxconnector.core.builders.spec import BarSpec, OpenMode, PriceSide, VolumeMode
from fxconnector.core.builders.vector import build
from fxconnector.core.errors import BrokerDisconnected, ConfigError
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.status import BrokerState
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.runtime.clock import SystemClock
from fxconnector.runtime.ingest.broker.fxcm import protocol as wire
from fxconnector.runtime.ingest.broker.fxcm.adapter import FxcmBroker
from fxconnector.runtime.ingest.broker.fxcm.bridge_env import BRIDGE_PATH
from fxconnector.runtime.ingest.broker.port import BrokerPort, HistoryAnswer, SessionEvent
from fxconnector.runtime.ingest.broker.resilience import Backoff
from fxconnector.runtime.ingest.broker.sim.generator import TickGenerator
from tests.conftest import calendar_profile

T = TypeVar("T")
STANDIN = Path(__file__).parent / "standin"
SRC = Path(fxconnector.__file__).resolve().parents[1]
USER = "D161234567"
PASSWORD = "s3cr3t-Pa55word-for-the-tests"  # noqa: S105 (the stand-in's test account)
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")
SEED = 7
TICKS_PER_MINUTE = 2400
CALENDARS = {s: calendar_profile("always_open").for_symbol(s) for s in (*SYMBOLS, "AUDUSD")}
ADAPTER_LOGGER = "fxconnector.runtime.ingest.broker.fxcm.adapter"


def run(coroutine: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
    """Run a test coroutine with a bound on the whole of it."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout=timeout_s)

    return asyncio.run(bounded())


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(f"{r.getMessage()} {r.__dict__.get('fields', '')}" for r in self.records)


@pytest.fixture
def adapter_log() -> Iterator[_ListHandler]:
    """Every record the adapter logs (bridge stderr lines and `log` messages included)."""
    handler = _ListHandler()
    logger = logging.getLogger(ADAPTER_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


class StandIn:
    """The stand-in SDK's environment and control file for one test."""

    def __init__(self, tmp_path: Path, faults: dict[str, Any] | None = None) -> None:
        self.control = tmp_path / "standin-control.json"
        self._faults: dict[str, Any] = {}
        self.set()
        self.environment = {
            "PYTHONPATH": os.pathsep.join((str(SRC), str(STANDIN))),
            "FXCM_STANDIN_USER": USER,
            "FXCM_STANDIN_PASSWORD": PASSWORD,
            "FXCM_STANDIN_SEED": str(SEED),
            "FXCM_STANDIN_TICKS_PER_MINUTE": str(TICKS_PER_MINUTE),
            "FXCM_STANDIN_CONTROL": str(self.control),
            "FXCM_STANDIN_FAULTS": json.dumps(faults or {}),
        }

    def set(self, **faults: Any) -> None:
        """Switch faults on or off in the running stand-in (atomically, as a new file)."""
        self._faults.update(faults)
        staging = self.control.with_suffix(".tmp")
        staging.write_text(json.dumps(self._faults))
        staging.replace(self.control)

    def broker(
        self, password: str = PASSWORD, python: str = sys.executable, **options: Any
    ) -> FxcmBroker:
        settings: dict[str, Any] = {
            "watchdog_silence_s": 1.0,
            "backoff": Backoff(base_s=0.05, cap_s=0.5),
            "connect_timeout_s": 30.0,
            "history_timeout_s": 30.0,
            "close_timeout_s": 5.0,
            "bridge_backoff_base_s": 0.05,
            "bridge_backoff_cap_s": 0.5,
        }
        settings.update(options)
        return FxcmBroker(
            FxcmBrokerConfig(python=python, url="http://standin.invalid/Hosts.jsp"),
            Secrets(fxcm_user=Secret(USER), fxcm_password=Secret(password)),
            SYMBOLS,
            CALENDARS,
            SystemClock(),
            bridge_env=self.environment,
            **settings,
        )


@contextlib.asynccontextmanager
async def connected(broker: FxcmBroker) -> AsyncIterator[FxcmBroker]:
    try:
        await broker.connect()
        yield broker
    finally:
        await broker.close()


class Stream:
    """Bounded reads from the broker's two iterators."""

    def __init__(self, broker: FxcmBroker) -> None:
        self.ticks = cast(AsyncGenerator[Tick, None], broker.ticks())
        self.events = cast(AsyncGenerator[SessionEvent, None], broker.session_events())
        self.seen: list[SessionEvent] = []

    async def take_ticks(self, count: int, timeout_s: float = 10.0) -> list[Tick]:
        return [await asyncio.wait_for(anext(self.ticks), timeout_s) for _ in range(count)]

    async def until(
        self, match: Callable[[SessionEvent], bool], since_ms: int = 0, timeout_s: float = 15.0
    ) -> SessionEvent:
        """The next session event that matches and happened at `since_ms` or later."""
        while True:
            event = await asyncio.wait_for(anext(self.events), timeout_s)
            self.seen.append(event)
            if event.ts_ms >= since_ms and match(event):
                return event

    async def aclose(self) -> None:
        await self.ticks.aclose()
        await self.events.aclose()


def subscribed(event: SessionEvent) -> bool:
    return event.state is BrokerState.CONNECTED and "SUBSCRIBED" in event.detail


def now_ms() -> int:
    return SystemClock().now_ms()


def generator() -> TickGenerator:
    return TickGenerator(SEED, CALENDARS, ticks_per_minute=TICKS_PER_MINUTE)


def expected_bars(
    symbol: str, from_ms: int, to_ms: int, price: PriceSide, open_mode: OpenMode
) -> list[OhlcvEvent]:
    """The generator's ticks aggregated by our own builder (an hour before gives the opens)."""
    spec = BarSpec(price=price, open_mode=open_mode, volume=VolumeMode.TICKS)
    batch = generator().between(symbol, from_ms - 60 * MINUTE_MS, to_ms)
    bars, late = build(batch, (Timeframe.M1,), CALENDARS[symbol], spec)
    assert late == 0
    events = bars[Timeframe.M1].events(symbol, Timeframe.M1, complete=True, source=Source.HISTORY)
    return [event for event in events if from_ms <= event.open_ms < to_ms]


def last_minutes(count: int, ended_mins_ago: int = 0) -> tuple[int, int]:
    """[from_ms, to_ms) of `count` minutes, the last of them ended `ended_mins_ago` ago."""
    now = int(time.time() * 1000)
    to_ms = now - now % MINUTE_MS - ended_mins_ago * MINUTE_MS
    return to_ms - count * MINUTE_MS, to_ms


# -- construction ----------------------------------------------------------------------------


def test_fxcm_broker_satisfies_the_port_and_checks_its_settings(tmp_path: Path) -> None:
    standin = StandIn(tmp_path)
    port: BrokerPort = standin.broker()
    assert port.kind == "fxcm"
    assert PASSWORD not in repr(port)
    config = FxcmBrokerConfig(python=sys.executable)
    with pytest.raises(ConfigError, match="FXCONNECTOR_FXCM_USER") as missing:
        FxcmBroker(config, Secrets(fxcm_user=Secret(USER)), SYMBOLS, CALENDARS, SystemClock())
    assert USER not in str(missing.value)
    secrets = Secrets(fxcm_user=Secret(USER), fxcm_password=Secret(PASSWORD))
    with pytest.raises(ConfigError, match="bid and ask"):
        FxcmBroker(
            config, secrets, SYMBOLS, CALENDARS, SystemClock(), spec=BarSpec(price=PriceSide.MID)
        )
    with pytest.raises(ConfigError, match="no calendar"):
        FxcmBroker(config, secrets, ("EURCHF",), CALENDARS, SystemClock())
    with pytest.raises(ConfigError, match="watchdog_silence_s"):
        FxcmBroker(config, secrets, SYMBOLS, CALENDARS, SystemClock(), watchdog_silence_s=0)


# -- ticks -----------------------------------------------------------------------------------


def test_ticks_carry_the_offers_row_time_and_our_symbol_names(tmp_path: Path) -> None:
    standin = StandIn(tmp_path)

    async def scenario() -> tuple[list[Tick], list[SessionEvent], int]:
        broker = standin.broker()
        async with connected(broker):
            stream = Stream(broker)
            ticks = await stream.take_ticks(60)
            await stream.aclose()
            assert broker.state is BrokerState.CONNECTED
        events = [event async for event in broker.session_events()]
        return ticks, events, broker.parse_errors

    ticks, events, parse_errors = run(scenario())
    source = generator()
    assert {tick.symbol for tick in ticks} <= set(SYMBOLS)  # AUD/USD is in the table, not asked
    assert len({tick.symbol for tick in ticks}) > 1
    for tick in ticks:
        # exactly one of the generator's quotes: the row's own time, never the receipt time
        made = source.between(tick.symbol, tick.ts_ms, tick.ts_ms + 1).ticks()
        assert Tick(tick.symbol, tick.bid, tick.ask, tick.ts_ms) in [
            Tick(t.symbol, t.bid, t.ask, t.ts_ms) for t in made
        ]
    for symbol in SYMBOLS:
        times = [tick.ts_ms for tick in ticks if tick.symbol == symbol]
        assert times == sorted(times)
    states = [event.state for event in events]
    assert states[0] is BrokerState.CONNECTING
    assert BrokerState.CONNECTED in states
    assert states[-1] is BrokerState.STOPPED
    assert any(subscribed(event) and "EURUSD,GBPUSD,USDJPY" in event.detail for event in events)
    assert parse_errors == 0


# -- history ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "open_mode", "chunk_mins"),
    [
        (PriceSide.BID, OpenMode.FIRST_TICK, 240),
        (PriceSide.ASK, OpenMode.PREVIOUS_CLOSE, 7),  # chunks that split the range unevenly
    ],
)
def test_history_gives_the_stand_ins_bars_as_final_1m(
    tmp_path: Path, price: PriceSide, open_mode: OpenMode, chunk_mins: int
) -> None:
    standin = StandIn(tmp_path)
    spec = BarSpec(price=price, open_mode=open_mode)
    from_ms, to_ms = last_minutes(30)
    workdir = tmp_path / "var" / "fxcm"  # made by the adapter: the SDK caches history there

    async def scenario() -> list[OhlcvEvent]:
        broker = standin.broker(spec=spec, history_chunk_mins=chunk_mins, workdir=workdir)
        async with connected(broker):
            return (await broker.history_1m("USDJPY", from_ms, to_ms)).bars

    bars = run(scenario())
    assert bars == expected_bars("USDJPY", from_ms, to_ms, price, open_mode)
    assert len(bars) == 30
    assert workdir.is_dir()
    for bar in bars:
        assert bar.complete
        assert bar.source is Source.HISTORY
        assert bar.event_ts == bar.close_ms == bar.open_ms + MINUTE_MS - 1
        assert bar.rev == 0
        assert bar.tick_count == bar.volume
        assert isinstance(bar.volume, int)


def test_history_that_fails_near_now_is_asked_again_up_to_now(
    tmp_path: Path, adapter_log: _ListHandler
) -> None:
    standin = StandIn(tmp_path, faults={"history_near_now_fails_s": 300})
    from_ms, to_ms = last_minutes(5)

    async def scenario() -> list[OhlcvEvent]:
        async with connected(standin.broker()) as broker:
            return (await broker.history_1m("EURUSD", from_ms, to_ms + 30_000)).bars

    bars = run(scenario())
    # the range's end is inside the running minute: only the ended minutes come back
    assert bars == expected_bars("EURUSD", from_ms, to_ms, PriceSide.BID, OpenMode.FIRST_TICK)
    assert "asking again up to now" in adapter_log.text()


def test_empty_and_partial_history_are_answered_as_they_come(tmp_path: Path) -> None:
    standin = StandIn(tmp_path, faults={"history_empty": True})
    from_ms, to_ms = last_minutes(30)

    async def scenario() -> tuple[HistoryAnswer, HistoryAnswer]:
        async with connected(standin.broker()) as broker:
            empty = await broker.history_1m("EURUSD", from_ms, to_ms)
            standin.set(history_empty=False, history_partial=True)
            partial = await broker.history_1m("EURUSD", from_ms, to_ms)
            return empty, partial

    empty, partial = run(scenario())
    # No row at all: nothing is proven quiet (the SDK's empty answer may be a failure).
    assert empty.bars == []
    assert empty.unproven == [(from_ms, to_ms)]
    # Every SDK answer cut in half: the bridge asks again from where each one ended, so the
    # whole range arrives and no hole is left in its middle.
    expected = expected_bars("EURUSD", from_ms, to_ms, PriceSide.BID, OpenMode.FIRST_TICK)
    assert partial.bars == expected
    assert partial.unproven == []


def test_history_error_28_is_transient_and_reported(tmp_path: Path) -> None:
    standin = StandIn(tmp_path, faults={"history_errors": 2})
    # well before now: the bridge's second try for ranges near now does not come into it
    from_ms, to_ms = last_minutes(10, ended_mins_ago=15)

    async def scenario() -> tuple[list[str], list[OhlcvEvent], FxcmBroker]:
        errors: list[str] = []
        async with connected(standin.broker()) as broker:
            for _ in range(5):  # the pipeline's retry, under its budget
                try:
                    answer = await broker.history_1m("GBPUSD", from_ms, to_ms)
                    return errors, answer.bars, broker
                except BrokerDisconnected as exc:
                    errors.append(str(exc))
                    await asyncio.sleep(0.05)
        raise AssertionError(f"history never succeeded: {errors}")

    errors, bars, broker = run(scenario())
    assert len(errors) == 2
    assert all("errorCode=28" in error and "QuotesManager" in error for error in errors)
    assert broker.history_errors == 2
    assert "errorCode=28" in broker.last_history_error
    assert bars == expected_bars("GBPUSD", from_ms, to_ms, PriceSide.BID, OpenMode.FIRST_TICK)
    assert broker.restarts == 0  # an SDK error is not a reason to restart the bridge


def test_stuck_history_times_out_and_restarts_the_bridge(tmp_path: Path) -> None:
    standin = StandIn(tmp_path, faults={"history_hang": True})
    from_ms, to_ms = last_minutes(3)

    async def scenario() -> tuple[str, list[OhlcvEvent], int]:
        broker = standin.broker(history_timeout_s=1.5)
        async with connected(broker):
            stream = Stream(broker)
            first_pid = broker.bridge_pid
            with pytest.raises(BrokerDisconnected, match="no answer") as caught:
                await broker.history_1m("EURUSD", from_ms, to_ms)
            timed_out_ms = now_ms()
            standin.set(history_hang=False)
            await stream.until(subscribed, since_ms=timed_out_ms)
            assert broker.bridge_pid not in (None, first_pid)
            bars = (await broker.history_1m("EURUSD", from_ms, to_ms)).bars
            await stream.aclose()
            return str(caught.value), bars, broker.restarts

    message, bars, restarts = run(scenario())
    assert "busy-waiting" in message
    assert restarts == 1
    assert bars == expected_bars("EURUSD", from_ms, to_ms, PriceSide.BID, OpenMode.FIRST_TICK)


# -- session recovery ----------------------------------------------------------------------


def test_a_lost_session_is_logged_in_again_and_resubscribed(tmp_path: Path) -> None:
    standin = StandIn(tmp_path)

    async def scenario() -> tuple[list[SessionEvent], list[Tick], int, int, int]:
        broker = standin.broker()
        async with connected(broker):
            stream = Stream(broker)
            pid = broker.bridge_pid
            await stream.take_ticks(5)
            standin.set(lose_session=1)
            lost = await stream.until(lambda e: "SESSION_LOST" in e.detail)
            await stream.until(subscribed, since_ms=lost.ts_ms)
            # ticks resume after the loss (older ones may still be queued: skip them)
            after: list[Tick] = []
            while len(after) < 10:
                after.extend(t for t in await stream.take_ticks(1) if t.ts_ms > lost.ts_ms)
            await stream.aclose()
            assert broker.bridge_pid == pid  # the bridge recovered the session itself
            return stream.seen, after, broker.reconnects, broker.restarts, lost.ts_ms

    seen, after, reconnects, restarts, lost_ms = run(scenario())
    lost = next(event for event in seen if "SESSION_LOST" in event.detail)
    assert lost.state is BrokerState.DISCONNECTED
    assert any("LOGIN_RETRY" in event.detail for event in seen)
    assert subscribed(seen[-1])
    assert reconnects == 1
    assert restarts == 0
    assert {tick.symbol for tick in after} <= set(SYMBOLS)
    assert all(tick.ts_ms > lost_ms for tick in after)


def test_a_silent_stream_is_stale_then_restarted_until_it_talks_again(tmp_path: Path) -> None:
    standin = StandIn(tmp_path)

    async def scenario() -> tuple[list[SessionEvent], list[Tick], int]:
        broker = standin.broker()
        async with connected(broker):
            stream = Stream(broker)
            await stream.take_ticks(5)
            standin.set(silent=True)
            stale = await stream.until(lambda e: e.state is BrokerState.STALE)
            assert "no ticks for 1 s" in stale.detail
            talking_ms = now_ms()
            standin.set(silent=False)
            await stream.until(subscribed, since_ms=talking_ms)
            after = [t for t in await stream.take_ticks(10) if t.ts_ms > stale.ts_ms]
            await stream.aclose()
            return stream.seen, after, broker.restarts

    seen, after, restarts = run(scenario())
    assert restarts >= 1
    assert after
    states = [event.state for event in seen]
    assert states.index(BrokerState.STALE) < len(states) - 1
    assert subscribed(seen[-1])


def test_a_dead_bridge_is_restarted_with_backoff(tmp_path: Path) -> None:
    standin = StandIn(tmp_path)

    async def scenario() -> tuple[SessionEvent, list[Tick], int]:
        broker = standin.broker()
        async with connected(broker):
            stream = Stream(broker)
            pid = broker.bridge_pid
            assert pid is not None
            killed_ms = now_ms()
            os.kill(pid, signal.SIGKILL)
            died = await stream.until(lambda e: e.state is BrokerState.DISCONNECTED, killed_ms)
            await stream.until(subscribed, since_ms=killed_ms)
            assert broker.bridge_pid not in (None, pid)
            after = await stream.take_ticks(5)
            await stream.aclose()
            return died, after, broker.restarts

    died, after, restarts = run(scenario())
    assert "exit code -9" in died.detail
    assert restarts == 1
    assert after


def test_failed_logins_are_retried_with_backoff(tmp_path: Path, adapter_log: _ListHandler) -> None:
    standin = StandIn(tmp_path, faults={"login_failures": 2})

    async def scenario() -> list[SessionEvent]:
        broker = standin.broker()
        async with connected(broker):
            assert broker.state is BrokerState.CONNECTED  # connect() waited for it
        return [event async for event in broker.session_events()]

    events = run(scenario())
    retries = [event for event in events if "LOGIN_RETRY" in event.detail]
    assert len(retries) == 2
    assert all(event.state is BrokerState.DISCONNECTED for event in retries)
    assert "errorCode=28" in adapter_log.text()


# -- fatal errors and secrets ----------------------------------------------------------------


def test_bad_credentials_are_fatal_and_never_shown(
    tmp_path: Path, adapter_log: _ListHandler
) -> None:
    standin = StandIn(tmp_path)
    wrong = "wrong-Pa55word-nobody-may-see"

    async def scenario() -> tuple[str, str, list[SessionEvent], FxcmBroker]:
        broker = standin.broker(password=wrong)
        try:
            with pytest.raises(ConfigError, match="refused the login") as caught:
                await broker.connect()
            with pytest.raises(ConfigError) as again:
                await anext(aiter(broker.ticks()))
            events = []
            async for event in broker.session_events():
                events.append(event)
        finally:
            await broker.close()
        return str(caught.value), str(again.value), events, broker

    message, again, events, broker = run(scenario())
    assert "FXCONNECTOR_FXCM_PASSWORD" in message  # says what to fix
    assert again == message
    assert events[-1].state is BrokerState.STOPPED
    assert broker.restarts == 0  # a refusal is never retried (no account lock-out)
    logged = adapter_log.text() + "\n".join(broker.error_samples)
    for secret in (wrong, USER):  # the stand-in echoes the user id in its refusal
        assert secret not in message
        assert secret not in logged
        assert all(secret not in event.detail for event in events)
    assert "********" in logged


def test_an_account_that_must_change_its_password_is_fatal(tmp_path: Path) -> None:
    standin = StandIn(tmp_path, faults={"password_expired": True})

    async def scenario() -> str:
        broker = standin.broker()
        try:
            with pytest.raises(ConfigError) as caught:
                await broker.connect()
        finally:
            await broker.close()
        return str(caught.value)

    message = run(scenario())
    assert "CONNECTED_WITH_NEED_TO_CHANGE_PASSWORD" in message
    assert "FXCONNECTOR_FXCM_PASSWORD" in message


def test_a_missing_interpreter_or_sdk_is_a_clear_config_error(tmp_path: Path) -> None:
    standin = StandIn(tmp_path)
    standin.environment["PYTHONPATH"] = str(SRC)  # no forexconnect importable

    async def scenario() -> tuple[str, str]:
        messages = []
        for broker in (standin.broker(python=str(tmp_path / "python3.7")), standin.broker()):
            try:
                with pytest.raises(ConfigError) as caught:
                    await broker.connect()
                messages.append(str(caught.value))
            finally:
                await broker.close()
        return messages[0], messages[1]

    no_python, no_sdk = run(scenario())
    assert "broker.fxcm.python" in no_python
    assert "pip install forexconnect" in no_sdk


def test_a_bridge_that_cannot_start_is_a_config_error_with_its_own_last_lines(
    tmp_path: Path,
) -> None:
    # A real interpreter that cannot run bridge.py: a broken module shadows the standard one.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "queue.py").write_text('raise ImportError("queue is broken on this machine")\n')
    standin = StandIn(tmp_path)
    standin.environment["PYTHONPATH"] = os.pathsep.join(
        (str(broken), standin.environment["PYTHONPATH"])
    )

    async def scenario() -> str:
        broker = standin.broker()
        try:
            with pytest.raises(ConfigError) as caught:
                await broker.connect()
            assert broker.restarts == 0  # restarting would only say the same again
            return str(caught.value)
        finally:
            await broker.close()

    message = run(scenario())
    assert message.startswith("the fxcm bridge exited with code 1 before its hello")
    assert "its last lines:" in message
    assert "ImportError: queue is broken on this machine" in message
    assert PASSWORD not in message


def _run_bridge_directly(
    environment: dict[str, str], requests: list[wire.Request], enough: Callable[[bytes], bool]
) -> tuple[int, bytes, bytes]:
    """Start bridge.py, send `requests`, wait (bounded) until its stdout is `enough`, shut down."""
    url = ("--url", "http://standin.invalid/Hosts.jsp")
    process = subprocess.Popen(
        [
            sys.executable,
            str(BRIDGE_PATH),
            "--protocol",
            str(wire.PROTOCOL_VERSION),
            "--connection",
            "Demo",
            *url,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    outputs: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    def pump(name: str, stream: Any) -> None:
        for line in stream:
            outputs[name] += line

    pumps = [
        threading.Thread(target=pump, args=(name, getattr(process, name)), daemon=True)
        for name in outputs
    ]
    try:
        for thread in pumps:
            thread.start()
        process.stdin.write(b"".join(wire.encode_line(r) for r in requests))
        process.stdin.flush()
        deadline = time.monotonic() + 30
        while not enough(bytes(outputs["stdout"])) and process.poll() is None:
            assert time.monotonic() < deadline, "the bridge did not answer in 30 s"
            time.sleep(0.05)
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(wire.encode_line(wire.ShutdownRequest()))
            process.stdin.close()
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for thread in pumps:
            thread.join(timeout=10)
        for pipe in (process.stdout, process.stderr):
            pipe.close()
    return code, bytes(outputs["stdout"]), bytes(outputs["stderr"])


def test_the_bridge_keeps_stdout_for_protocol_lines_and_secrets_out(tmp_path: Path) -> None:
    """The bridge run directly: every stdout line is protocol, whatever the SDK prints."""
    standin = StandIn(tmp_path, faults={"print_noise": True})
    from_ms, to_ms = last_minutes(3)
    requests: list[wire.Request] = [
        wire.SubscribeRequest(symbols=["EURUSD"]),
        wire.HistoryRequest(id="h1", symbol="EURUSD", from_ms=from_ms, to_ms=to_ms, price="bid"),
    ]
    runs = []
    for password in (PASSWORD, "wrong-" + PASSWORD):
        environment = {
            "PATH": os.environ.get("PATH", ""),
            **standin.environment,
            "FXCONNECTOR_FXCM_USER": USER,
            "FXCONNECTOR_FXCM_PASSWORD": password,
        }
        runs.append(
            _run_bridge_directly(
                environment, requests, lambda out: b'"tick"' in out and b'"history_' in out
            )
        )

    (good_code, good_out, good_err), (bad_code, bad_out, bad_err) = runs
    assert good_code == 0
    assert bad_code == 2
    good = [wire.decode_message(line) for line in good_out.splitlines()]  # all protocol
    bad = [wire.decode_message(line) for line in bad_out.splitlines()]
    assert isinstance(good[0], wire.Hello)
    assert any(isinstance(m, wire.TickMessage) for m in good)
    assert any(isinstance(m, wire.HistoryResult) and len(m.bars) == 3 for m in good)
    assert isinstance(bad[0], wire.Hello)
    assert isinstance(bad[-1], wire.FatalMessage)
    assert bad[-1].code == "bad_credentials"
    assert b"noise" in good_err  # what the SDK printed went to stderr
    for secret in (PASSWORD.encode(), USER.encode()):
        for output in (good_out, good_err, bad_out, bad_err):
            assert secret not in output


def test_unreadable_bridge_lines_are_counted_never_a_reconnect(tmp_path: Path) -> None:
    """Fed straight to the line handler: the bridge itself never writes such lines."""
    broker = StandIn(tmp_path).broker()
    tick = msgspec.json.encode(wire.TickMessage("EURUSD", 1.1, 1.2, 1709733600000))
    for line in (b"not json\n", b'{"type":"tick","symbol":"EURUSD"}\n', b'{"type":"order"}\n'):
        broker._on_line(line)
    broker._on_line(tick)
    assert broker.parse_errors == 3
    assert len(broker.error_samples) == 3
    assert "not json" in broker.error_samples[0]
    assert broker.restarts == 0
    assert broker.state is BrokerState.DISCONNECTED  # nothing was started or restarted
