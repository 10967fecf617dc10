"""Push cursors: stream ids in the single layout and for one symbol, composites otherwise."""

from __future__ import annotations

import pytest

from fxconnector.runtime.publish.http_common import ApiError
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.push_cursor import format_cursor, parse_cursor, streams_of

SINGLE = SurfaceKeys("ns")
CLUSTER = SurfaceKeys("ns", cluster=True)


def test_the_single_layout_cursor_is_the_stream_id() -> None:
    positions = parse_cursor("17-2", "cursor", SINGLE, ["EURUSD", "GBPUSD"])
    assert positions == {"ns:ohlcv:events": (17, 2)}
    assert format_cursor(positions, streams_of(SINGLE, ["EURUSD", "GBPUSD"])) == "17-2"


def test_a_one_symbol_cluster_cursor_is_that_streams_id() -> None:
    positions = parse_cursor("17", "cursor", CLUSTER, ["GBPUSD"])
    assert positions == {"ns:ohlcv:events:{GBPUSD}": (17, 0)}
    assert format_cursor(positions, streams_of(CLUSTER, ["GBPUSD"])) == "17-0"


def test_a_several_symbol_cluster_cursor_is_composite_and_round_trips() -> None:
    symbols = ["GBPUSD", "EURUSD"]
    text = "EURUSD:5-1,GBPUSD:9-0"
    positions = parse_cursor(text, "cursor", CLUSTER, symbols)
    assert positions == {"ns:ohlcv:events:{EURUSD}": (5, 1), "ns:ohlcv:events:{GBPUSD}": (9, 0)}
    assert format_cursor(positions, streams_of(CLUSTER, symbols)) == text
    # Extra symbols are ignored; a plain id applies to every stream.
    assert parse_cursor("USDJPY:1-0," + text, "c", CLUSTER, symbols) == positions
    assert set(parse_cursor("7-0", "c", CLUSTER, symbols).values()) == {(7, 0)}


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("EURUSD:1-0", SINGLE),  # composites are for the cluster layout
        ("EURUSD:1-0", CLUSTER),  # GBPUSD missing
        ("EURUSD:1-0,EURUSD:2-0,GBPUSD:1-0", CLUSTER),  # repeated
        ("EURUSD:x,GBPUSD:1-0", CLUSTER),
        (":1-0", CLUSTER),
        ("1-2-3", SINGLE),
    ],
)
def test_bad_cursors_are_422(text: str, keys: SurfaceKeys) -> None:
    with pytest.raises(ApiError) as error:
        parse_cursor(text, "cursor", keys, ["EURUSD", "GBPUSD"])
    assert (error.value.status, error.value.code) == (422, "invalid_parameter")
