"""Length-prefixed JSON frames: the wire format of the execution control socket.

A frame is a 4-byte big-endian unsigned length `n` followed by `n` bytes of canonical JSON (one
object). Pure: bytes in, objects out; the caller owns the socket. A frame longer than
`MAX_FRAME_BYTES`, or whose body is not one JSON object, is a FrameError: the connection is
then unusable (the reader cannot find the next frame boundary) and is closed.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from fxconnector.core.errors import ContractViolation
from fxconnector.core.utils.json_codec import encode

HEADER_BYTES: Final = 4
MAX_FRAME_BYTES: Final = 1 << 20


class FrameError(ContractViolation):
    """The peer sent bytes that are not a frame of this protocol."""


def encode_frame(message: dict[str, Any]) -> bytes:
    """The frame of `message` (canonical JSON)."""
    body = encode(message)
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
    return len(body).to_bytes(HEADER_BYTES, "big") + body


def frame_length(header: bytes) -> int:
    """The body length a header announces (FrameError past the bound)."""
    if len(header) != HEADER_BYTES:
        raise FrameError(f"frame header of {len(header)} bytes, expected {HEADER_BYTES}")
    length = int.from_bytes(header, "big")
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
    return length


def decode_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a frame's body (FrameError when it is not one)."""
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise FrameError(f"frame is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FrameError(f"frame is a JSON {type(value).__name__}, expected an object")
    return value


class FrameDecoder:
    """Incremental decoder: `feed(bytes)` returns the complete frames' objects so far."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        out: list[dict[str, Any]] = []
        while len(self._buffer) >= HEADER_BYTES:
            length = frame_length(bytes(self._buffer[:HEADER_BYTES]))
            end = HEADER_BYTES + length
            if len(self._buffer) < end:
                break
            out.append(decode_body(bytes(self._buffer[HEADER_BYTES:end])))
            del self._buffer[:end]
        return out
