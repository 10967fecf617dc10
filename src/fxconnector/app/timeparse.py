"""Parsing the times people type on the command line into epoch ms.

Accepted: ISO-8601 with `Z` or an offset (`2019-03-08T21:59:00Z`, `2019-03-08 16:59-05:00`),
an ISO date or time with no offset (read as UTC, the one time zone of this system), or a plain
integer of epoch milliseconds.
"""

from __future__ import annotations

import datetime as dt

from fxconnector.core.errors import ConfigError
from fxconnector.core.time_geom import RANGE_END_MS, RANGE_START_MS, to_ms


def parse_time_ms(text: str, *, flag: str = "time") -> int:
    """Epoch ms of `text`; ConfigError with a one-line reason when it cannot be read."""
    value = text.strip()
    if value.lstrip("-").isdigit():
        ts = int(value)
    else:
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"{flag}: cannot read {text!r} as a time "
                "(use ISO-8601 like 2019-03-08T21:59:00Z, or epoch milliseconds)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        ts = to_ms(moment)
    if not RANGE_START_MS <= ts < RANGE_END_MS:
        raise ConfigError(f"{flag}: {text!r} is outside 1970-01-01..2100-01-01 UTC")
    return ts
