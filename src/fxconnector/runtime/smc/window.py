"""The hints a series' SMC snapshot keeps: its active hints and its newest ones, bounded.

Rules:
- Objects (swings, gaps, order blocks, liquidity pools, previous day/week levels, sessions)
  are active until they end; lifecycle events (`fvg_mitigated`, `ob_mitigated`,
  `liquidity_swept`, `bos`, `choch`) are never active themselves and end the object their
  `ref` names (a break ends its swing). A newer previous-day/week level or session of a kind
  ends the older one of that kind. A retracted hint (`retracted`) is not active.
- One entry per hint id: a revision (`rev + 1`) replaces the earlier one and moves to the end.
- The window keeps hints in emission order. Past `limit` hints the oldest inactive one goes
  first; only when every kept hint is active does the oldest active one go. So a chart that
  loads the snapshot sees every live zone and the recent history around it.
- A hint's bytes are its canonical JSON, encoded once when it is added.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from fxconnector.core.model.smc import SmcHint, SmcKind
from fxconnector.smc import encode_hint

#: Lifecycle events: never active; each ends the object its `ref` names.
EVENT_KINDS: Final = frozenset(
    {
        SmcKind.FVG_MITIGATED,
        SmcKind.OB_MITIGATED,
        SmcKind.LIQUIDITY_SWEPT,
        SmcKind.BOS,
        SmcKind.CHOCH,
    }
)
#: Kinds of which only the newest is active.
LATEST_ONLY: Final = frozenset(
    {
        SmcKind.PREV_DAY_HIGH,
        SmcKind.PREV_DAY_LOW,
        SmcKind.PREV_WEEK_HIGH,
        SmcKind.PREV_WEEK_LOW,
        SmcKind.SESSION_ASIA,
        SmcKind.SESSION_LONDON,
        SmcKind.SESSION_NEW_YORK,
    }
)


class HintWindow:
    """One series' kept hints (module rules)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._limit = limit
        # Emission order: id -> (hint, bytes). Python dicts keep insertion order.
        self._kept: dict[str, tuple[SmcHint, bytes]] = {}
        self._ended: set[str] = set()
        self._latest: dict[SmcKind, str] = {}

    def add(self, hints: Iterable[SmcHint]) -> list[bytes]:
        """Keep `hints` (in emission order); their canonical bytes, in the same order."""
        out: list[bytes] = []
        for hint in hints:
            if hint.kind in EVENT_KINDS and hint.ref is not None:
                self._ended.add(hint.ref)
            if hint.kind in LATEST_ONLY:
                older = self._latest.get(hint.kind)
                if older is not None and older != hint.id:
                    self._ended.add(older)
                self._latest[hint.kind] = hint.id
            data = encode_hint(hint)
            self._kept.pop(hint.id, None)
            self._kept[hint.id] = (hint, data)
            out.append(data)
        self._bound()
        return out

    def active(self, hint: SmcHint) -> bool:
        return hint.kind not in EVENT_KINDS and not hint.retracted and hint.id not in self._ended

    def _bound(self) -> None:
        excess = len(self._kept) - self._limit
        if excess <= 0:
            return
        drop = [key for key, (hint, _) in self._kept.items() if not self.active(hint)][:excess]
        if len(drop) < excess:
            dropping = set(drop)
            drop += [key for key in self._kept if key not in dropping][: excess - len(drop)]
        for key in drop:
            del self._kept[key]
        self._ended &= set(self._kept)

    def hints(self) -> list[SmcHint]:
        return [hint for hint, _ in self._kept.values()]

    def encoded(self) -> bytes:
        """The snapshot's `hints` JSON array."""
        return b"[" + b",".join(data for _, data in self._kept.values()) + b"]"
