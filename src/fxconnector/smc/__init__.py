"""SMC layer (DESIGN §15): causal, non-repainting smart-money hints from final bars.

Pure (sans-I/O): `SmcEngine(symbol, tf, config).update(final_bar) -> list[SmcHint]`. The store
run (`fxconnector smc`) and the live consumer share this one code path. Definitions: docs/smc.md.
"""

from fxconnector.smc.config import DEFAULT_SESSIONS, SessionName, SessionSpec, SmcConfig
from fxconnector.smc.engine import SmcEngine
from fxconnector.smc.hints import CSV_HEADER, csv_row, encode_hint, encode_hints, order_key

__all__ = [
    "CSV_HEADER",
    "DEFAULT_SESSIONS",
    "SessionName",
    "SessionSpec",
    "SmcConfig",
    "SmcEngine",
    "csv_row",
    "encode_hint",
    "encode_hints",
    "order_key",
]
