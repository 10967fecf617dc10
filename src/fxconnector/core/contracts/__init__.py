"""The public contracts: JSON Schemas (draft 2020-12) in `public/`, the SSOT of every payload.

The typed models in `core.model` follow these files; `tests/core/contracts` proves they agree.
Reading the schema files is reading our own package data, nothing else.
"""

from __future__ import annotations

import json
from enum import StrEnum
from importlib import resources
from typing import Any


class ContractName(StrEnum):
    """Every public schema there is."""

    OHLCV_EVENT_V1 = "ohlcv_event_v1"
    TICK_V1 = "tick_v1"
    STATUS_V2 = "status_v2"
    STATUS_SYMBOL_V1 = "status_symbol_v1"
    COMMANDS_V1 = "commands_v1"
    INTENT_V1 = "intent_v1"
    EXEC_EVENT_V1 = "exec_event_v1"
    EXEC_PROCESS_V1 = "exec_process_v1"
    SMC_HINT_V1 = "smc_hint_v1"


def load_schema(name: ContractName) -> dict[str, Any]:
    """The JSON Schema document of `name`, as parsed JSON."""
    text = resources.files(__package__).joinpath("public", f"{name.value}.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
