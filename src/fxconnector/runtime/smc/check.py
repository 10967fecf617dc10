"""Checks of SMC hints read back from Redis before they are served (a shared Redis is not
trusted), as `runtime.publish.event_check` does for bars.

Rules:
- Each hint is decoded against `smc_hint_v1` (the frozen model, unknown fields rejected) and
  its cross-field rules (`hint_problems`); it must belong to the series or stream it was read
  from. An invalid hint is never served: skipped, counted and sampled (`Rejects`, kind
  `smc_hint`). Valid hints are passed on as the bytes Redis held (never re-encoded).
- A snapshot whose `hints` is not a JSON array is rejected whole (kind `smc_snapshot`).
"""

from __future__ import annotations

from typing import Final

import msgspec

from fxconnector.core.model.smc import SmcHint
from fxconnector.core.time_geom import Timeframe
from fxconnector.core.validation.validator import decode_checked, hint_problems
from fxconnector.runtime.publish.event_check import Rejects

_RAW_LIST: Final = msgspec.json.Decoder(list[msgspec.Raw])


class HintCheck:
    """Validates SMC hints and snapshots read from the surface."""

    def __init__(self, rejects: Rejects) -> None:
        self.rejects = rejects

    def hint(
        self, data: bytes, where: str, symbol: str | None = None, tf: Timeframe | None = None
    ) -> SmcHint | None:
        """The decoded hint when `data` is a valid hint (of `symbol`/`tf` when given)."""
        checked = decode_checked(data, SmcHint)
        hint = checked.value
        if hint is None:
            self.rejects.add("smc_hint", where, checked.problems[0].message)
            return None
        problems = hint_problems(hint)
        problem = problems[0].message if problems else None
        if problem is None and symbol is not None and hint.symbol != symbol:
            problem = f"a hint of {hint.symbol} read for {symbol}"
        if problem is None and tf is not None and hint.tf is not tf:
            problem = f"a hint of {hint.tf.value} read for {tf.value}"
        if problem is not None:
            self.rejects.add("smc_hint", where, problem)
            return None
        return hint

    def snapshot(
        self, data: bytes, symbol: str, tf: Timeframe, where: str
    ) -> list[tuple[SmcHint, bytes]]:
        """The valid hints of a snapshot's `hints` array, with their bytes, in its order."""
        try:
            items = _RAW_LIST.decode(data)
        except msgspec.DecodeError as exc:
            self.rejects.add("smc_snapshot", where, str(exc))
            return []
        out: list[tuple[SmcHint, bytes]] = []
        for item in items:
            raw = bytes(item)
            hint = self.hint(raw, where, symbol, tf)
            if hint is not None:
                out.append((hint, raw))
        return out
