"""Structured logs: one JSON object per line on stderr, secrets redacted.

Rules: log records carry an `event` name and fields (`log.info("ssot.durable", extra=...)` is
not used; call `emit(logger, level, event, **fields)`). Every known secret value is replaced by
`********` before a line is written, whatever put it there.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

from fxconnector.core.utils.json_codec import encode

_REDACTED = "********"


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts_ms": int(record.created * 1000),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            fields.update(extra)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        line = encode(fields).decode()
        for secret in self._secrets:
            line = line.replace(secret, _REDACTED)
        return line


def configure(level: str = "info", secrets: Iterable[str] = ()) -> None:
    """Send fxconnector's logs to stderr as JSON lines at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger("fxconnector")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def emit(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log `event` with structured fields."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})
