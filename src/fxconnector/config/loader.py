"""Loading the config: built-in profile, then the TOML file, then command-line overrides.

Rules: loaded once, at the composition root; the result is frozen. An unknown key anywhere is a
ConfigError naming the key's full dotted path. A secret-looking value in the file (a password in
the Redis URL) is refused: secrets live in `config.secrets`.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from fxconnector.config.schema import Config
from fxconnector.core.errors import ConfigError

PROFILES = ("demo", "fx")
_AT = re.compile(r"`\$\.?(?P<path>[^`]*)`")


def load_config(
    path: Path | None = None,
    *,
    profile: str = "demo",
    overrides: dict[str, Any] | None = None,
) -> Config:
    """The effective config: profile < file < overrides (dotted keys, e.g. `http.bind`)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown config profile {profile!r} (known: {', '.join(PROFILES)})")
    merged = _read_profile(profile)
    if path is not None:
        _merge(merged, _read_toml(path), "")
    for dotted, value in (overrides or {}).items():
        _merge(merged, _nest(dotted, value), "")
    try:
        config = msgspec.convert(merged, type=Config, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, path)) from None
    _check(config)
    return config


def _read_profile(name: str) -> dict[str, Any]:
    text = resources.files("fxconnector.config").joinpath("profiles", f"{name}.toml").read_text()
    return tomllib.loads(text)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _merge(base: dict[str, Any], extra: dict[str, Any], prefix: str) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, f"{prefix}{key}.")
        else:
            base[key] = value


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _explain(exc: msgspec.ValidationError, path: Path | None) -> str:
    text = str(exc)
    where = f"config file {path}" if path else "config"
    match = _AT.search(text)
    section = match["path"] if match else ""
    unknown = re.match(r"Object contains unknown field `(?P<key>[^`]+)`", text)
    if unknown:
        key = f"{section}.{unknown['key']}" if section else unknown["key"]
        return f"{where}: unknown key {key!r}"
    return f"{where}: {text.replace('$.', '')}"


def _check(config: Config) -> None:
    if "1m" not in config.bars.timeframes:
        raise ConfigError("config: bars.timeframes must include 1m (every final derives from it)")
    if len(set(config.bars.timeframes)) != len(config.bars.timeframes):
        raise ConfigError("config: bars.timeframes lists a timeframe twice")
    if config.ticks.min_price > config.ticks.max_price:
        raise ConfigError("config: ticks.min_price must not be above ticks.max_price")
    if len(set(config.broker.symbols)) != len(config.broker.symbols):
        raise ConfigError("config: broker.symbols lists a symbol twice")
    if config.surface.redis_url:
        parts = urlsplit(config.surface.redis_url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                "config: surface.redis_url must start with redis://, rediss:// or unix://"
            )
        if parts.password:
            raise ConfigError(
                "config: surface.redis_url carries a password; put it in the secrets file "
                "(redis_password) or FXCONNECTOR_REDIS_PASSWORD instead"
            )
