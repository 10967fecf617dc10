"""Fuzzing the config loader (issue 11 p6): any file gives a Config or one ConfigError, never
another exception. Files are random bytes, or TOML written from the real sections and keys with
nasty values, so most examples get past the TOML parser into the schema and the cross checks."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from fxconnector.config import schema
from fxconnector.config.loader import load_config
from fxconnector.core.errors import ConfigError
from tests.fuzz_values import readable

SECTIONS: dict[str, type[msgspec.Struct]] = {
    "calendar": schema.CalendarConfig,
    "bars": schema.BarsConfig,
    "ticks": schema.TicksConfig,
    "store": schema.StoreConfig,
    "surface": schema.SurfaceConfig,
    "http": schema.HttpConfig,
    "broker": schema.BrokerConfig,
    "broker.sim": schema.SimBrokerConfig,
    "broker.replay": schema.ReplayBrokerConfig,
    "broker.fxcm": schema.FxcmBrokerConfig,
    "broker.oanda": schema.OandaBrokerConfig,
}
KEYS = {name: [f.name for f in msgspec.structs.fields(s)] for name, s in SECTIONS.items()}
TOP_KEYS = [
    f.name
    for f in msgspec.structs.fields(schema.Config)
    if not isinstance(f.default, msgspec.Struct)
]

scalar = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 1, 65_536, 10**18]),
    st.floats(),
    st.booleans(),
    st.text(max_size=30),
    st.sampled_from(
        [
            *("1m", "5m", "7m", "EURUSD", "eurusd", "sim", "fxcm", "jsonl", "sqlite", "fx_ny"),
            *("redis://:pw@h:1/0", "http://x", "127.0.0.1:0", "[::1]:8088", "../../etc", ""),
        ]
    ),
)
value = st.one_of(scalar, st.lists(scalar, max_size=4))


def toml_value(item: Any) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if math.isnan(item):
            return "nan"
        if math.isinf(item):
            return "inf" if item > 0 else "-inf"
        return repr(item)
    if isinstance(item, str):
        return json.dumps(item)
    return "[" + ", ".join(toml_value(x) for x in item) + "]"


@st.composite
def toml_files(draw: st.DrawFn) -> str:
    lines = [
        f"{key} = {toml_value(draw(value))}"
        for key in draw(st.lists(st.sampled_from(TOP_KEYS), max_size=2, unique=True))
    ]
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=4, unique=True)):
        lines.append(f"[{section}]")
        keys = draw(st.lists(st.sampled_from(KEYS[section]), max_size=4, unique=True))
        if draw(st.booleans()):
            keys.append(draw(st.from_regex(r"\A[a-z_]{1,10}\Z")))
        lines.extend(f"{key} = {toml_value(draw(value))}" for key in keys)
    return "\n".join(lines) + "\n"


def _load(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_bytes(data)
        try:
            config = load_config(path)
        except ConfigError as exc:
            readable(exc)
            return
        assert isinstance(config, schema.Config)


@given(text=toml_files())
def test_toml_from_the_real_keys_is_a_config_or_a_config_error(text: str) -> None:
    _load(text.encode())


@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_random_bytes_are_a_config_or_a_config_error(data: bytes) -> None:
    _load(data)
