"""Running the engine over hand-made bars and picking hints by kind (test helper)."""

from __future__ import annotations

from collections.abc import Sequence

from fxconnector.core.model.bar import OhlcvEvent
from fxconnector.core.model.smc import SmcHint, SmcKind
from fxconnector.smc import SmcConfig, SmcEngine


def run(bars: Sequence[OhlcvEvent], config: SmcConfig | None = None) -> list[SmcHint]:
    first = bars[0]
    engine = SmcEngine(first.symbol, first.tf, config or SmcConfig(swing_length=2))
    return [hint for bar in bars for hint in engine.update(bar)]


def of(hints: Sequence[SmcHint], *kinds: SmcKind) -> list[SmcHint]:
    return [h for h in hints if h.kind in kinds]


def index_of(bars: Sequence[OhlcvEvent], ts: int) -> int:
    """The bar whose open or close is `ts`."""
    return next(i for i, b in enumerate(bars) if ts in (b.open_ms, b.close_ms))
