"""Loading the config: built-in profile, then the TOML file, then command-line overrides.

Rules: loaded once, at the composition root; the result is frozen. An unknown key anywhere is a
ConfigError naming the key's full dotted path. A secret-looking value in the file (a password in
the Redis URL) is refused: secrets live in `config.secrets`.
- The profile follows the broker kind unless named: a real broker (`fxcm`, `oanda`) gets `fx`,
  the sim and replay get `demo`. A real broker never runs on `demo` (its always-open calendar
  and local history budget are for the simulator): naming both is a ConfigError.
- Every path comes out absolute, resolved once here: `workdir` against the current directory,
  every other relative path (store, secrets file, calendar overrides, replay input, execution
  journal and socket) against the workdir; nothing later depends on the current directory (a
  child process that changes directory sees the same files).
"""

from __future__ import annotations

import os
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from fxconnector.config.redis_url import check_cluster_url, check_redis_url
from fxconnector.config.schema import Config
from fxconnector.core.errors import ConfigError

PROFILES = ("demo", "fx")
#: Brokers with real money behind them: never on the demo profile.
REAL_BROKERS = ("fxcm", "oanda")
_AT = re.compile(r"`\$\.?(?P<path>[^`]*)`")


def load_config(
    path: Path | None = None,
    *,
    profile: str | None = None,
    overrides: dict[str, Any] | None = None,
    cwd: Path | None = None,
) -> Config:
    """The effective config: profile < file < overrides (dotted keys, e.g. `http.bind`), with
    every path absolute (`workdir` relative to `cwd`, default the current directory).

    `profile=None` chooses it from the broker kind the file or overrides name (see module doc).
    """
    if profile is not None and profile not in PROFILES:
        raise ConfigError(f"unknown config profile {profile!r} (known: {', '.join(PROFILES)})")
    mine: dict[str, Any] = {} if path is None else _read_toml(path)
    for dotted, value in (overrides or {}).items():
        _merge(mine, _nest(dotted, value), "")
    kind = _broker_kind(mine)
    if profile is None:
        profile = "fx" if kind in REAL_BROKERS else "demo"
    elif profile == "demo" and kind in REAL_BROKERS:
        raise ConfigError(
            f"--profile demo cannot run the real broker {kind!r}: the demo profile is for the "
            "simulator (an always-open calendar, 6000 history requests a minute); leave "
            "--profile out (a real broker gets the fx profile) or give --profile fx"
        )
    _removed_keys(mine, path)
    merged = _read_profile(profile)
    _merge(merged, mine, "")
    try:
        config = msgspec.convert(merged, type=Config, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, path)) from None
    _check(config)
    return resolve_paths(config, Path.cwd() if cwd is None else cwd)


def resolve_paths(config: Config, cwd: Path) -> Config:
    """`config` with every path absolute: the workdir against `cwd`, the rest against it."""
    workdir = _absolute(cwd, config.workdir)

    def under(path: str) -> str:
        return _absolute(Path(workdir), path) if path else ""

    return msgspec.structs.replace(
        config,
        workdir=workdir,
        secrets_file=under(config.secrets_file),
        store=msgspec.structs.replace(config.store, path=under(config.store.path)),
        calendar=msgspec.structs.replace(
            config.calendar, overrides_path=under(config.calendar.overrides_path)
        ),
        broker=msgspec.structs.replace(
            config.broker,
            replay=msgspec.structs.replace(
                config.broker.replay, path=under(config.broker.replay.path)
            ),
        ),
        execution=msgspec.structs.replace(
            config.execution,
            journal_dir=under(config.execution.journal_dir),
            socket_path=under(config.execution.socket_path),
        ),
    )


def _absolute(base: Path, path: str) -> str:
    """`path` made absolute against `base` and normalised (`a/../b` is `b`); `~` expanded."""
    return os.path.normpath(base / Path(path).expanduser())


def _read_profile(name: str) -> dict[str, Any]:
    text = resources.files("fxconnector.config").joinpath("profiles", f"{name}.toml").read_text()
    return tomllib.loads(text)


def _broker_kind(settings: dict[str, Any]) -> str | None:
    broker = settings.get("broker")
    kind = broker.get("kind") if isinstance(broker, dict) else None
    return kind if isinstance(kind, str) else None


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


def _removed_keys(settings: dict[str, Any], path: Path | None) -> None:
    """A key an older version accepted: a ConfigError saying what replaced it."""
    surface = settings.get("surface")
    if isinstance(surface, dict) and "events_maxlen" in surface:
        where = f"config file {path}" if path else "config"
        raise ConfigError(
            f"{where}: surface.events_maxlen is gone: the events stream is trimmed by time "
            "now; remove it and set surface.events_retention_s (seconds, default 300) instead"
        )


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
        check_redis_url(config.surface.redis_url)
    if config.surface.cluster:
        check_cluster_url(config.surface.redis_url)
