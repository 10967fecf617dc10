"""OANDA v20 parsing against golden payloads: whole outputs compared to expected lists."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import pytest

from fxconnector.core.errors import BadBrokerData, BrokerDisconnected, ConfigError
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import Timeframe, to_ms
from fxconnector.runtime.ingest.broker.oanda.parse import (
    Heartbeat,
    RateLimited,
    StreamItem,
    Untradeable,
    answer_error,
    error_message,
    format_time,
    instrument_of,
    parse_candles,
    parse_stream_line,
    parse_time_ms,
    retry_after_s,
    symbol_of,
)

FIXTURES = Path(__file__).parent / "fixtures"


def at(hour: int, minute: int, second: int = 0, ms: int = 0) -> int:
    """Epoch ms of 2024-03-06 (a Wednesday) at the given UTC time."""
    return to_ms(dt.datetime(2024, 3, 6, hour, minute, second, ms * 1000, tzinfo=dt.UTC))


def lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def bar(
    symbol: str, minute: int, o: float, h: float, low: float, c: float, volume: int
) -> OhlcvEvent:
    open_ms = at(14, minute)
    return OhlcvEvent(
        symbol=symbol,
        tf=Timeframe.M1,
        open_ms=open_ms,
        close_ms=open_ms + 59_999,
        open=o,
        high=h,
        low=low,
        close=c,
        volume=volume,
        tick_count=volume,
        complete=True,
        source=Source.HISTORY,
        event_ts=open_ms + 59_999,
        rev=0,
    )


def test_the_pricing_stream_golden_file() -> None:
    got: list[StreamItem] = [parse_stream_line(line) for line in lines("pricing_stream.jsonl")]
    assert got == [
        Tick("EURUSD", 1.08995, 1.09008, at(14, 30, 5, 123), 1_000_000.0, 1_000_000.0),
        Tick("USDJPY", 149.882, 149.897, at(14, 30, 5, 371), 500_000.0, 500_000.0),
        Heartbeat(at(14, 30, 7, 4)),
        Tick("EURUSD", 1.08996, 1.09007, at(14, 30, 7, 250), 1_000_000.0, 1_000_000.0),
        # .999999999 s truncates to .999: a time never moves into the next second (or minute)
        Tick("XAUUSD", 2145.315, 2145.635, at(14, 30, 8, 999), 100.0, 100.0),
        Untradeable("EURUSD", at(14, 30, 9, 0)),
        Tick("GBPUSD", 1.26991, 1.27004, at(14, 30, 9, 400)),  # no liquidity: no sizes
        Heartbeat(at(14, 30, 12, 6)),
    ]
    no_sizes = parse_stream_line(lines("pricing_stream.jsonl")[6])
    assert isinstance(no_sizes, Tick)
    assert no_sizes.bid_volume is msgspec.UNSET
    assert no_sizes.ask_volume is msgspec.UNSET


@pytest.mark.parametrize(
    ("line_no", "says"),
    [
        (0, "no bids or asks"),
        (1, "no bids or asks"),
        (2, "unreadable stream message"),
        (3, "unreadable stream message"),  # an unknown message type
        (4, "bid is not a number"),
        (5, "bid is not a positive price"),
        (6, "bid is not a positive price"),  # NaN
        (7, "invalid time 'yesterday'"),
        (8, "invalid time"),  # February 30th
        (9, "unknown instrument name 'EURUSD'"),
        (10, "unreadable stream message"),  # no time
        (11, "bid liquidity is not a size"),
        (12, "unreadable stream message"),  # a heartbeat without time
        (13, "unreadable stream message"),
    ],
)
def test_every_bad_stream_line_is_bad_broker_data(line_no: int, says: str) -> None:
    bad = lines("pricing_stream_bad.jsonl")
    assert len(bad) == 14
    with pytest.raises(BadBrokerData) as caught:
        parse_stream_line(bad[line_no])
    assert says in str(caught.value)


def test_candles_bid_golden_file_keeps_complete_candles_only() -> None:
    body = (FIXTURES / "candles_eur_usd_m1_bid.json").read_bytes()
    answer = parse_candles(body, "EURUSD", "B")
    # 14:30 is incomplete: OANDA's own signal that every minute before it has ended
    assert (answer.rejected, answer.passed_until_ms, answer.unfinished) == (
        [],
        at(14, 30),
        [at(14, 30)],
    )
    assert answer.bars == [
        bar("EURUSD", 25, 1.08991, 1.08999, 1.08985, 1.08995, 42),
        bar("EURUSD", 26, 1.08996, 1.09004, 1.08990, 1.09001, 37),
        # 14:27 has no candle: a quiet minute, nothing invented
        bar("EURUSD", 28, 1.09002, 1.09002, 1.09002, 1.09002, 1),
        bar("EURUSD", 29, 1.09003, 1.09017, 1.08998, 1.09012, 58),
        # 14:30 is incomplete: never final
    ]


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        (
            "B",
            [
                bar("USDJPY", 28, 149.874, 149.889, 149.861, 149.882, 118),
                bar("USDJPY", 29, 149.881, 149.893, 149.870, 149.890, 96),
            ],
        ),
        (
            "A",
            [
                bar("USDJPY", 28, 149.889, 149.904, 149.876, 149.897, 118),
                bar("USDJPY", 29, 149.896, 149.908, 149.885, 149.905, 96),
            ],
        ),
        (
            "M",
            [
                bar("USDJPY", 28, 149.8815, 149.8965, 149.8685, 149.8895, 118),
                bar("USDJPY", 29, 149.8885, 149.9005, 149.8775, 149.8975, 96),
            ],
        ),
    ],
)
def test_candles_take_the_configured_price_component(
    price: str, expected: list[OhlcvEvent]
) -> None:
    body = (FIXTURES / "candles_usd_jpy_m1_bam.json").read_bytes()
    assert price in ("B", "A", "M")
    assert parse_candles(body, "USDJPY", price).bars == expected  # type: ignore[arg-type]


def test_an_answer_for_another_instrument_or_unreadable_as_a_whole_is_bad_data() -> None:
    bid_only = (FIXTURES / "candles_eur_usd_m1_bid.json").read_bytes()
    with pytest.raises(BadBrokerData, match="asked for GBP_USD M1 candles, got 'EUR_USD'"):
        parse_candles(bid_only, "GBPUSD", "B")
    with pytest.raises(BadBrokerData, match="unreadable candles answer"):
        parse_candles(
            b'{"instrument":"EUR_USD","granularity":"M1","candles":[{"time', "EURUSD", "B"
        )


def candles(*candles: bytes) -> bytes:
    return b'{"instrument":"EUR_USD","granularity":"M1","candles":[' + b",".join(candles) + b"]}"


def candle(minute: int, high: str = "1.1", volume: str = "1", extra: bytes = b"") -> bytes:
    return (
        b'{"complete":true,"volume":'
        + volume.encode()
        + b',"time":"2024-03-06T14:'
        + str(minute).zfill(2).encode()
        + b':00.000000000Z",'
        b'"bid":{"o":"1.1","h":"' + high.encode() + b'","l":"1.1","c":"1.1"}' + extra + b"}"
    )


def test_a_bad_candle_rejects_itself_only() -> None:
    bid_only = (FIXTURES / "candles_eur_usd_m1_bid.json").read_bytes()
    no_mid = parse_candles(bid_only, "EURUSD", "M")
    assert no_mid.bars == []
    assert {(c.open_ms, c.reason) for c in no_mid.rejected} == {
        (at(14, m), "no_price_component") for m in (25, 26, 28, 29)
    }
    twice = parse_candles(
        candles(candle(24), candle(25), candle(25, "1.2"), candle(26)), "EURUSD", "B"
    )
    assert [b.open_ms for b in twice.bars] == [at(14, 24), at(14, 26)]
    assert [(c.open_ms, c.reason) for c in twice.rejected] == [(at(14, 25), "duplicate_time")]
    for high, reason in [
        ("abc", "price_not_positive"),
        ("0", "price_not_positive"),
        ("-1.1", "price_not_positive"),
        ("inf", "price_not_positive"),
        ("nan", "price_not_positive"),
        ("1.0", "ohlc_inconsistent"),
    ]:
        answer = parse_candles(candles(candle(24), candle(25, high), candle(26)), "EURUSD", "B")
        assert [b.open_ms for b in answer.bars] == [at(14, 24), at(14, 26)]
        assert [(c.open_ms, c.reason) for c in answer.rejected] == [(at(14, 25), reason)]
    negative = parse_candles(candles(candle(25, volume="-3"), candle(26)), "EURUSD", "B")
    assert [(c.open_ms, c.reason) for c in negative.rejected] == [(at(14, 25), "bad_volume")]
    # A candle that does not decode at all: its minute is named when its time reads.
    unreadable = parse_candles(
        candles(candle(24), b'{"time":"2024-03-06T14:25:00Z","complete":"yes"}', b'{"x":1}'),
        "EURUSD",
        "B",
    )
    assert [b.open_ms for b in unreadable.bars] == [at(14, 24)]
    assert [(c.open_ms, c.reason) for c in unreadable.rejected] == [
        (at(14, 25), "unreadable"),
        (None, "unreadable"),
    ]


def test_an_empty_candles_answer_is_quiet() -> None:
    body = b'{"instrument":"EUR_USD","granularity":"M1","candles":[]}'
    assert parse_candles(body, "EURUSD", "B").bars == []


def test_times_rfc3339_with_nanoseconds_offsets_and_unix() -> None:
    assert parse_time_ms("2024-03-06T14:30:05.123456789Z") == at(14, 30, 5, 123)
    assert parse_time_ms("2024-03-06T14:30:05Z") == at(14, 30, 5)
    assert parse_time_ms("2024-03-06T14:30:05.1Z") == at(14, 30, 5, 100)
    assert parse_time_ms("2024-03-06T16:30:05.5+02:00") == at(14, 30, 5, 500)
    assert parse_time_ms("1709735405.123456789") == at(14, 30, 5, 123)
    assert parse_time_ms("1709735405") == at(14, 30, 5)
    for bad in ("", "2024-03-06 14:30:05Z", "2024-03-06T14:30:05", "1e9", "2200-01-01T00:00:00Z"):
        with pytest.raises(BadBrokerData):
            parse_time_ms(bad)
    assert format_time(at(14, 30)) == "2024-03-06T14:30:00Z"
    assert format_time(at(14, 30, 5, 7)) == "2024-03-06T14:30:05.007Z"


def test_symbols_map_three_three_both_ways() -> None:
    assert [instrument_of(s) for s in ("EURUSD", "USDJPY", "XAUUSD")] == [
        "EUR_USD",
        "USD_JPY",
        "XAU_USD",
    ]
    assert [symbol_of(i) for i in ("EUR_USD", "XAU_USD")] == ["EURUSD", "XAUUSD"]
    for symbol in ("US30", "SPX500USD", "eurusd"):
        with pytest.raises(ConfigError, match=f"cannot map symbol '{symbol}'"):
            instrument_of(symbol)
    for instrument in ("EURUSD", "SPX500_USD", "eur_usd"):
        with pytest.raises(BadBrokerData, match="unknown instrument name"):
            symbol_of(instrument)


def test_error_bodies() -> None:
    assert error_message((FIXTURES / "error_401.json").read_bytes()) == (
        "Insufficient authorization to perform request."
    )
    assert error_message((FIXTURES / "error_400_count.json").read_bytes()) == (
        "Maximum value for 'count' exceeded"
    )
    assert error_message((FIXTURES / "error_400_to_future.json").read_bytes()) == (
        "Invalid value specified for 'to'. Time is in the future"
    )
    assert error_message(b"<html>\n  502 Bad Gateway\n</html>") == "<html> 502 Bad Gateway </html>"
    assert error_message(b"") == "no message"
    assert len(error_message(b"x" * 10_000)) == 200


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = to_ms(dt.datetime(2024, 3, 6, 14, 30, tzinfo=dt.UTC))
    assert retry_after_s("3", now) == 3.0
    assert retry_after_s(" 0.5 ", now) == 0.5
    assert retry_after_s("Wed, 06 Mar 2024 14:30:07 GMT", now) == 7.0
    assert retry_after_s("Wed, 06 Mar 2024 14:29:00 GMT", now) == 0.0  # already past
    for unusable in (None, "", "soon", "-1", "nan", "inf"):
        assert retry_after_s(unusable, now) is None


@pytest.mark.parametrize(
    ("status", "message", "fatal_4xx", "expected", "says"),
    [
        (401, "Insufficient authorization", False, ConfigError, "set FXCONNECTOR_OANDA_TOKEN"),
        (403, "Forbidden", False, ConfigError, "or fix account_id under [broker.oanda]"),
        (429, "Rate limit violation", False, RateLimited, "rate limit on the candles (429"),
        (500, "Internal error", False, BrokerDisconnected, "candles failed (500: Internal"),
        (503, "Service unavailable", True, BrokerDisconnected, "candles failed (503"),
        (400, "Invalid value specified for 'instrument'", False, ConfigError, "broker.symbols"),
        (400, "Invalid value specified for 'instruments'", True, ConfigError, "broker.symbols"),
        (404, "The path does not exist", True, ConfigError, "the URLs under [broker.oanda]"),
        (301, "Moved", False, ConfigError, "the URLs under [broker.oanda]"),
        (400, "Maximum value for 'count' exceeded", False, BadBrokerData, "refused the candles"),
    ],
)
def test_answer_errors_map_onto_our_tree(
    status: int, message: str, fatal_4xx: bool, expected: type[Exception], says: str
) -> None:
    error = answer_error(
        status, message, what="candles", account_id="101-1", wait_s=2.0, fatal_4xx=fatal_4xx
    )
    assert type(error) is expected
    assert says in str(error)
    if isinstance(error, RateLimited):
        assert error.retry_after_s == 2.0
