"""The SMC hints on the push stream (`/api/stream` and `/ws` with `kinds=smc`).

Rules: the hints are read from the SMC stream(s) by a fan-out of their own (one reader per
process, as for bars), each validated before it is kept or queued (`check.HintCheck`), passed
on as the bytes Redis held: SSE `event: smc`, WebSocket frames `{"id": ..., "smc": {...}}`.
A hint id passed on with the same or a higher rev is not passed on again.
"""

from __future__ import annotations

from collections.abc import Iterable

from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.push_cursor import smc_streams_of
from fxconnector.runtime.publish.push_feed import Checked
from fxconnector.runtime.smc.check import HintCheck


class SmcFeed:
    """The SMC hint stream(s) as a push feed (`runtime.publish.push_feed`)."""

    name = "smc"

    def __init__(self, check: HintCheck) -> None:
        self._check = check

    def streams(self, keys: SurfaceKeys, symbols: Iterable[str]) -> dict[str, str]:
        return smc_streams_of(keys, symbols)

    def check(self, data: bytes, where: str, symbol: str | None) -> Checked | None:
        hint = self._check.hint(data, where, symbol)
        if hint is None:
            return None
        return Checked(hint.symbol, hint.tf.value, hint.id, hint.rev)
