"""Flags and helpers the tool command lines share: where the store is, its lock, the calendar.

Rules: a store that does not exist is a ConfigError (tools never create one by accident, except a
migration's destination); a store held by another writer (a running connector) is a ConfigError
that says so and what to do instead. The app lends the tools its time parser and progress bar
(`CliSupport`), since tools sit below the app and may not import it.
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
        kind_flag, dest="store_kind", default="jsonl", choices=STORE_KINDS, help="default jsonl"
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


@contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Turn StoreLocked into the operator's answer: a connector is running on this store."""
    try:
        yield
    except StoreLocked as exc:
        raise ConfigError(
            f"the store {path} is in use: {exc}. A running connector holds it; stop the "
            "connector first, or use its API instead (HTTP /api/bars and /api/status to read, "
            "`fxconnector cmd` to send it commands)"
        ) from None


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
