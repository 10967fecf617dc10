"""Operator tools: thin command lines over runtime code (`audit`, `migrate`).

Rules: a tool parses flags, opens stores (taking their writer locks), calls one runtime function
and prints; the logic lives in `runtime`. Bad input and a store held by a running connector are
ConfigErrors (one line on stderr, exit code 2, by `app.main`). The app hands in what it owns
(time parsing, the progress bar), since tools sit below the app and may not import it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from fxconnector.tools import audit, migrate
from fxconnector.tools.options import CliSupport, ParseTime, ProgressLike


def add_commands(
    commands: argparse._SubParsersAction[Any],
    *,
    parse_time: ParseTime,
    progress_bar: Callable[[str], ProgressLike],
) -> None:
    """Register `audit` and `migrate`."""
    support = CliSupport(parse_time, progress_bar)
    audit.add_command(commands, support)
    migrate.add_command(commands, support)
