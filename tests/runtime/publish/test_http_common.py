"""Parameter and header parsing shared by the HTTP API and the push stream."""

from __future__ import annotations

import pytest

from fxconnector.runtime.publish.http_common import accepts_gzip


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("identity", False),
        ("br, deflate", False),
        ("gzip", True),
        ("GZip", True),
        ("x-gzip", True),
        ("gzip, deflate, br, zstd", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=oops", False),
        ("*", True),
        ("*;q=0", False),
        ("gzip;q=0, *", False),  # an explicit refusal wins over the wildcard
        ("*, gzip;q=0", False),
        ("br, *;q=0.1", True),
    ],
)
def test_accepts_gzip(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected
