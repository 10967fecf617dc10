"""Length-prefixed JSON frames: round trip, any split of the byte stream, bounds."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.utils.frames import (
    HEADER_BYTES,
    MAX_FRAME_BYTES,
    FrameDecoder,
    FrameError,
    decode_body,
    encode_frame,
    frame_length,
)

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_MESSAGES = st.dictionaries(st.text(max_size=8), _VALUES, max_size=5)


@given(st.lists(_MESSAGES, min_size=1, max_size=6), st.data())
def test_frames_survive_any_split_of_the_stream(
    messages: list[dict[str, Any]], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = FrameDecoder()
    got: list[dict[str, Any]] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        got += decoder.feed(stream[start:cut])
        start = cut
    assert got == messages


def test_a_frame_is_a_big_endian_length_then_canonical_json() -> None:
    frame = encode_frame({"b": 1, "a": "x"})
    assert frame == (15).to_bytes(4, "big") + b'{"a":"x","b":1}'
    assert frame_length(frame[:HEADER_BYTES]) == 15


def test_oversized_and_malformed_frames_are_frame_errors() -> None:
    with pytest.raises(FrameError, match="exceeds"):
        frame_length((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
    with pytest.raises(FrameError, match="exceeds"):
        encode_frame({"x": "y" * MAX_FRAME_BYTES})
    with pytest.raises(FrameError, match="not JSON"):
        decode_body(b"{nope")
    with pytest.raises(FrameError, match="expected an object"):
        decode_body(b"[1,2]")
    with pytest.raises(FrameError, match="header of 3 bytes"):
        frame_length(b"abc")
