"""Secrets: broker credentials and the Redis password, never in the config file.

Rules: a secret is read from the environment (`FXCONNECTOR_*`) or from a secrets file (TOML,
owner-only permissions), the environment winning. A `Secret` never shows its value in `repr`,
`str`, logs, status or exceptions; only `reveal()` gives it, at the one place that needs it.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from fxconnector.core.errors import ConfigError


class Secret:
    """A value that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value; call only where it is handed to the library that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


ENV_PREFIX = "FXCONNECTOR_"


@dataclass(frozen=True, slots=True)
class Secrets:
    """Every secret fxconnector knows of; None when not given."""

    fxcm_user: Secret | None = None
    fxcm_password: Secret | None = None
    oanda_token: Secret | None = None
    redis_username: Secret | None = None
    redis_password: Secret | None = None

    def known(self) -> list[str]:
        """Names of the secrets that are set (names only, never values)."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def values(self) -> list[str]:
        """Every set secret's value, for redaction filters."""
        return [s.reveal() for f in fields(self) if (s := getattr(self, f.name)) is not None]


def load_secrets(path: Path | None, environ: Mapping[str, str] | None = None) -> Secrets:
    """Secrets from `path` (if given) overlaid by `FXCONNECTOR_<NAME>` environment variables."""
    env = os.environ if environ is None else environ
    names = [f.name for f in fields(Secrets)]
    values: dict[str, Secret] = {}
    if path is not None:
        for key, value in _read_file(path, names).items():
            values[key] = Secret(value)
    for name in names:
        text = env.get(ENV_PREFIX + name.upper())
        if text:
            values[name] = Secret(text)
    return Secrets(**values)


def _read_file(path: Path, names: list[str]) -> dict[str, str]:
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read secrets file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"secrets file {path} is readable by others; run: chmod 600 {path}")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        # The parser's message quotes no values, only positions.
        raise ConfigError(f"secrets file {path} is not valid TOML: {exc}") from None
    out: dict[str, str] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(
                f"secrets file {path}: unknown key {key!r} (known: {', '.join(names)})"
            )
        if not isinstance(value, str) or not value:
            raise ConfigError(f"secrets file {path}: {key} must be a non-empty string")
        out[key] = value
    return out
