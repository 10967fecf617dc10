"""The served symbol set on a real Redis with an injected clock: own symbols first, the
namespace's other ones added on the refresh period, their calendars from the profile, and a
Redis outage keeping the set as it was."""

from __future__ import annotations

import asyncio
from typing import Final

import pytest

from fxconnector.config.secrets import Secrets
from fxconnector.core.buckets import HasDayGrid
from fxconnector.core.calendar import CalendarProfile
from fxconnector.runtime.clock import ManualClock
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.redis_connect import connect_redis
from fxconnector.runtime.publish.served_symbols import ServedSymbols
from fxconnector.runtime.publish.surface_reader import SurfaceReader
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

T0: Final = 1_700_000_000_000
PERIOD_MS: Final = 2_000
OWN: Final = ("GBPUSD", "EURUSD")


def test_foreign_symbols_appear_on_the_refresh_period(
    redis_server: RedisServer, fx_ny: CalendarProfile
) -> None:
    keys = SurfaceKeys("shared")
    clock = ManualClock(T0)

    async def scenario() -> None:
        client = connect_redis(redis_server.url, Secrets())
        calendars: dict[str, HasDayGrid] = {s: fx_ny.for_symbol(s) for s in OWN}
        served = ServedSymbols(
            OWN,
            reader=SurfaceReader(client, keys),
            now_ms=clock.now_ms,
            calendars=calendars,
            calendar_for=fx_ny.for_symbol,
            period_ms=PERIOD_MS,
        )
        try:
            await client.sadd(keys.symbols, *OWN)
            assert served.shared
            # The first call reads at once; nothing foreign yet.
            assert await served.refresh_if_due() is False
            assert served.current() == OWN
            # Another process starts: not seen before the period has passed ...
            await client.sadd(keys.symbols, "XAUUSD", "AUDUSD")
            clock.set(T0 + PERIOD_MS - 1)
            assert await served.refresh_if_due() is False
            assert "XAUUSD" not in served
            # ... seen once it has: own symbols first (config order), the others sorted.
            clock.set(T0 + PERIOD_MS)
            assert await served.refresh_if_due() is True
            assert served.current() == (*OWN, "AUDUSD", "XAUUSD")
            assert "XAUUSD" in served
            assert not served.is_own("XAUUSD")
            assert served.is_own("EURUSD")
            # The foreign symbols get the profile's calendar for them, in the shared mapping.
            assert calendars["XAUUSD"] is fx_ny.for_symbol("XAUUSD")
            assert calendars["AUDUSD"] is fx_ny.for_symbol("AUDUSD")
            # Redis gone: the set is kept, and the next period reads again.
            redis_server.kill()
            clock.set(T0 + 2 * PERIOD_MS)
            assert await served.refresh_if_due() is False
            assert served.current() == (*OWN, "AUDUSD", "XAUUSD")
            redis_server.start()
            await client.sadd(keys.symbols, "USDJPY")
            clock.set(T0 + 3 * PERIOD_MS)
            assert await served.refresh_if_due() is True
            assert served.current() == (*OWN, "AUDUSD", "USDJPY", "XAUUSD")
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_the_embedded_default_serves_its_own_symbols_without_reading_redis() -> None:
    clock = ManualClock(T0)
    served = ServedSymbols(OWN, reader=None, now_ms=clock.now_ms, calendars={})

    async def scenario() -> None:
        assert served.shared is False
        assert await served.refresh_if_due() is False
        assert served.current() == OWN
        assert all(served.is_own(s) for s in OWN)

    asyncio.run(scenario())
