"""The one canonical JSON encoding.

Rules: compact separators, struct fields in declaration order, dict keys sorted, floats in their
shortest round-trip form, UTF-8. The same value always gives the same bytes, so stored lines can be
compared byte for byte and hashed. Nothing else in fxconnector encodes public JSON.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

_ENCODER = msgspec.json.Encoder(order="deterministic")


def encode(value: Any) -> bytes:
    """Canonical JSON bytes of `value` (structs, dicts, lists, scalars)."""
    return _ENCODER.encode(value)


def encode_lines(values: list[Any]) -> bytes:
    """Canonical JSON lines, each ended by a newline."""
    return _ENCODER.encode_lines(values)


def decode(data: bytes | str, type: type[T]) -> T:
    """Decode and validate JSON into `type`; raises msgspec.ValidationError/DecodeError."""
    return msgspec.json.decode(data, type=type)
