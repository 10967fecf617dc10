"""docs/configuration.md documents every key the schema accepts, under its section."""

from __future__ import annotations

import re

import msgspec

from fxconnector.config import execution, schema
from tests.conftest import REPO

SECTIONS: dict[str, type[msgspec.Struct]] = {
    "Top level": schema.Config,
    "[calendar]": schema.CalendarConfig,
    "[bars]": schema.BarsConfig,
    "[ticks]": schema.TicksConfig,
    "[store]": schema.StoreConfig,
    "[surface]": schema.SurfaceConfig,
    "[http]": schema.HttpConfig,
    "[broker]": schema.BrokerConfig,
    "[broker.sim]": schema.SimBrokerConfig,
    "[broker.replay]": schema.ReplayBrokerConfig,
    "[broker.fxcm]": schema.FxcmBrokerConfig,
    "[broker.oanda]": schema.OandaBrokerConfig,
    "[repair]": schema.RepairConfig,
    "[smc]": schema.SmcSection,
    "[execution]": execution.ExecutionConfig,
    "[execution.oanda]": execution.OandaExecConfig,
    "[execution.traders.NAME]": execution.TraderConfig,
    "[execution.traders.NAME.symbols.SYMBOL]": execution.SymbolLimitsConfig,
}


def test_every_key_is_documented_in_its_section() -> None:
    text = (REPO / "docs" / "configuration.md").read_text()
    parts = re.split(r"^#{2,3} ", text, flags=re.MULTILINE)
    by_title = {part.splitlines()[0].strip(): part for part in parts[1:]}
    for title, struct in SECTIONS.items():
        body = by_title[title]
        documented = set(re.findall(r"^\| `([a-z_]+)` \|", body, flags=re.MULTILINE))
        keys = {
            f.name
            for f in msgspec.structs.fields(struct)
            if not isinstance(f.default, msgspec.Struct)
        }
        assert keys == documented, (title, keys ^ documented)
