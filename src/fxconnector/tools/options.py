"""Flags and helpers the tool command lines share: where the store is, its lock, the calendar.

Rules: a store that does not exist is a ConfigError (tools never create one by accident, except a
migration's destination); a store held by another writer (a running connector) is a ConfigError
that says so and what to do instead. A store's kind and calendar come from its manifest; a flag
that contradicts the manifest is a ConfigError naming both values. The app lends the tools its
time parser and progress bar (`CliSupport`), since tools sit below the app and may not import it.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from fxconnector.config.calendars import load_calendar, profile_names
from fxconnector.config.schema import Config, StoreConfig
from fxconnector.core.calendar import CalendarProfile
from fxconnector.core.errors import ConfigError, StoreLocked
from fxconnector.core.model.bar import SYMBOL_PATTERN
from fxconnector.runtime.store import manifest
from fxconnector.runtime.store.factory import holds_data
from fxconnector.runtime.store.manifest import StoreKind, StoreManifest
from fxconnector.runtime.store.ssot_sqlite import DB_NAME

STORE_KINDS: Final = ("jsonl", "sqlite")
#: The config's default store: `workdir`/`[store] path`.
DEFAULT_WORKDIR: Final = Path(Config().workdir)


class ParseTime(Protocol):
    def __call__(self, text: str, *, flag: str = ...) -> int: ...


class ProgressLike(Protocol):
    def update(self, done: int, total: int) -> None: ...

    def finish(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CliSupport:
    """What the app lends the tools: its time parser and its progress bar."""

    parse_time: ParseTime
    progress_bar: Callable[[str], ProgressLike]


def add_store_flags(parser: argparse.ArgumentParser, *, kind_flag: str = "--store-kind") -> None:
    """`--workdir DIR | --store DIR` and the store kind."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--workdir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"the connector's workdir: the store is DIR/{StoreConfig().path} "
        f"(default workdir: {DEFAULT_WORKDIR})",
    )
    where.add_argument(
        "--store", type=Path, default=None, metavar="DIR", help="the store folder itself"
    )
    parser.add_argument(
        kind_flag,
        dest="store_kind",
        default=None,
        choices=STORE_KINDS,
        help="default: the store's manifest",
    )


def store_path(args: argparse.Namespace) -> Path:
    """The store folder named by `--store`, or `--workdir`, or the config default."""
    if args.store is not None:
        return Path(args.store)
    return Path(args.workdir or DEFAULT_WORKDIR) / StoreConfig().path


def require_store(path: Path, kind: str) -> None:
    """ConfigError unless a store of `kind` exists at `path`."""
    if kind == "sqlite" and not (path / DB_NAME).is_file():
        raise ConfigError(f"no sqlite store at {path} ({DB_NAME} not found)")
    if kind == "jsonl" and not path.is_dir():
        raise ConfigError(f"no jsonl store at {path} (not a folder)")


#: What a tool that reads bars can use instead of a store a running connector holds.
API_INSTEAD = "HTTP /api/bars and /api/status to read, `fxconnector cmd` to send it commands"


@contextmanager
def writer_lock(path: Path, instead: str = API_INSTEAD) -> Iterator[None]:
    """Turn StoreLocked into the operator's answer: a connector is running on this store;
    `instead` names what of its API gives the same answer."""
    try:
        yield
    except StoreLocked as exc:
        raise ConfigError(
            f"the store {path} is in use: {exc}. A running connector holds it; use its API "
            f"instead ({instead}), or stop the connector first"
        ) from None


@dataclass(frozen=True, slots=True)
class OpenedStore:
    """What a tool knows about an existing store before opening it."""

    path: Path
    kind: StoreKind
    manifest: StoreManifest | None  # None: a store written before manifests (legacy)
    profile: CalendarProfile


def existing_store(
    path: Path,
    kind_flag: str | None,
    calendar_flag: str | None,
    *,
    legacy_ok: bool = False,
    kind_flag_name: str = "--store-kind",
) -> OpenedStore:
    """The store at `path` with its kind and calendar from its manifest; flags only confirm.

    A store without a manifest is refused with the command that upgrades it, unless `legacy_ok`
    and `--calendar` is given (a read-only tool may then use the flag's calendar).
    """
    found = manifest.read_manifest(path)
    if found is None:
        kind: StoreKind = "sqlite" if (path / DB_NAME).is_file() else "jsonl"
        kind = "sqlite" if kind_flag == "sqlite" else kind
        require_store(path, kind)
        if not holds_data(path):
            raise ConfigError(f"no store at {path} (no {manifest.MANIFEST_NAME} and no bars)")
        if not (legacy_ok and calendar_flag is not None):
            hint = " (or pass --calendar NAME to use this tool on it as it is)" if legacy_ok else ""
            raise ConfigError(f"{manifest.legacy_error(path)}{hint}")
        return OpenedStore(path, kind, None, calendar(calendar_flag))
    manifest.check_flag(path, "--calendar", calendar_flag, found.calendar)
    manifest.check_flag(path, kind_flag_name, kind_flag, found.store_kind)
    require_store(path, found.store_kind)
    return OpenedStore(
        path, found.store_kind, found, manifest.load_profile(found, path, now_ms=now_ms())
    )


def symbol(text: str | None) -> str | None:
    if text is not None and not re.fullmatch(SYMBOL_PATTERN, text):
        raise ConfigError(f"--symbol: {text!r} is not a symbol like EURUSD")
    return text


def calendar(name: str) -> CalendarProfile:
    if name not in profile_names():
        known = ", ".join(profile_names())
        raise ConfigError(f"--calendar: unknown profile {name!r} (known: {known})")
    return load_calendar(name, now_ms=now_ms())


def now_ms() -> int:
    return time.time_ns() // 1_000_000
