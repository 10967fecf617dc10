"""What every ForexConnect bridge process is started with, for the price feed and the order
gateway alike: the script, its environment and the redaction of its output.

Rules: the child inherits only a short list of our environment variables (plus what the caller
passes), gets the credentials in its own environment (never on its command line) and Python's
unbuffered UTF-8 streams; anything it prints that we log or raise is first stripped of the
credentials' values.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from fxconnector.config.secrets import Secret

BRIDGE_PATH: Final = Path(__file__).with_name("bridge.py")
USER_ENV: Final = "FXCONNECTOR_FXCM_USER"
PASSWORD_ENV: Final = "FXCONNECTOR_FXCM_PASSWORD"  # noqa: S105 (a variable's name)
#: What a bridge inherits from our environment (the SDK needs its library path).
INHERITED_ENV: Final = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SYSTEMROOT",
    "LD_LIBRARY_PATH",
)
REDACTED: Final = "********"


def bridge_environment(
    user: Secret, password: Secret, extra: Mapping[str, str], inherit: Iterable[str] = ()
) -> dict[str, str]:
    """The environment of a bridge process: INHERITED_ENV and `inherit` from ours, `extra`,
    unbuffered UTF-8 streams and the credentials."""
    names = (*INHERITED_ENV, *inherit)
    env = {name: os.environ[name] for name in names if name in os.environ}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env[USER_ENV] = user.reveal()
    env[PASSWORD_ENV] = password.reveal()
    return env


def redact(text: str, *secrets: Secret) -> str:
    """`text` with every non-empty secret's value replaced by REDACTED."""
    for secret in secrets:
        value = secret.reveal()
        if value:
            text = text.replace(value, REDACTED)
    return text
