"""Validation of public payloads: schema first, then the contract's cross-field invariants.

Rules: never raises on bad input; returns a list of `Problem`s, each with a stable `ErrorCode`
(the codes are public: counters, status and clients use them). Schema checks are done by decoding
into the frozen models, whose constraints mirror the JSON Schema files (a test proves it), so
validation costs microseconds, not the milliseconds of a generic schema engine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

import msgspec

from fxconnector.core.buckets import HasDayGrid, bucket_open
from fxconnector.core.model.bar import FINAL_SOURCES, OhlcvEvent, Source
from fxconnector.core.model.command import Command
from fxconnector.core.model.smc import PRICE_KINDS, REF_KINDS, ZONE_KINDS, SmcHint, hint_id
from fxconnector.core.model.status import StatusV2
from fxconnector.core.model.tick import Tick
from fxconnector.core.time_geom import RANGE_END_MS, RANGE_START_MS, Timeframe

T = TypeVar("T")


class ErrorCode(StrEnum):
    """Stable error codes of validation problems."""

    # schema level
    MALFORMED_JSON = "schema.malformed_json"
    UNKNOWN_FIELD = "schema.unknown_field"
    MISSING_FIELD = "schema.missing_field"
    WRONG_TYPE = "schema.wrong_type"
    OUT_OF_RANGE = "schema.out_of_range"
    BAD_VALUE = "schema.bad_value"
    # bar invariants
    UNALIGNED_OPEN = "bar.unaligned_open"
    BAD_CLOSE = "bar.bad_close"
    OHLC_ORDER = "bar.ohlc_order"
    FINAL_EVENT_TS = "final.event_ts_not_close"
    FINAL_SOURCE = "final.source_not_final"
    PREVIEW_SOURCE = "preview.source_not_stream"
    PREVIEW_EVENT_TS = "preview.event_ts_outside_bar"
    SYMBOL_NOT_ALLOWED = "allowlist.symbol"
    TF_NOT_ALLOWED = "allowlist.tf"
    # order intents (core.validation.intent)
    INTENT_PRICE_REQUIRED = "intent.price_required"
    INTENT_PRICE_ON_MARKET = "intent.price_on_market"
    INTENT_TIME_IN_FORCE = "intent.time_in_force"
    INTENT_BRACKET_SIDE = "intent.bracket_side"
    # execution events (core.validation.intent)
    EXEC_RISK_REASON = "exec.risk_reason"
    # smc hint invariants
    HINT_CONFIRM_BEFORE_ANCHOR = "hint.confirm_before_anchor"
    HINT_LEVELS = "hint.levels"
    HINT_ZONE_ORDER = "hint.bottom_above_top"
    HINT_REF = "hint.ref"
    HINT_ID = "hint.id"


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a payload is not valid."""

    code: ErrorCode
    message: str
    path: str = "$"


@dataclass(frozen=True, slots=True)
class Checked(Generic[T]):
    """A decoded value (None when the schema failed) and the problems found."""

    value: T | None
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


_PATH = re.compile(r" - at `(?P<path>[^`]*)`$")


def schema_problem(exc: msgspec.DecodeError) -> Problem:
    """Map a msgspec decode/validation error to a Problem with a stable code."""
    text = str(exc)
    match = _PATH.search(text)
    path = match.group("path") if match else "$"
    message = text[: match.start()] if match else text
    if not isinstance(exc, msgspec.ValidationError):
        code = ErrorCode.MALFORMED_JSON
    elif message.startswith("Object contains unknown field"):
        code = ErrorCode.UNKNOWN_FIELD
    elif message.startswith("Object missing required field"):
        code = ErrorCode.MISSING_FIELD
    elif message.startswith("Expected `") and ("` >" in message or "` <" in message):
        code = ErrorCode.OUT_OF_RANGE
    elif (
        message.startswith("Expected `") and ("length" in message or "matching regex" in message)
    ) or message.startswith(("Invalid enum value", "Invalid value")):
        code = ErrorCode.BAD_VALUE
    else:
        code = ErrorCode.WRONG_TYPE
    return Problem(code, message, path)


def decode_checked(data: bytes | str | dict[str, Any], model: type[T]) -> Checked[T]:
    """Decode JSON text (or convert an already parsed object) into `model`, schema-checked."""
    try:
        if isinstance(data, dict):
            value = msgspec.convert(data, type=model, strict=True)
        else:
            value = msgspec.json.decode(data, type=model)
    except msgspec.DecodeError as exc:
        return Checked(None, (schema_problem(exc),))
    return Checked(value, ())


def bar_problems(
    event: OhlcvEvent,
    calendar: HasDayGrid,
    *,
    symbols: Collection[str] | None = None,
    timeframes: Collection[Timeframe] | None = None,
) -> list[Problem]:
    """Contract invariants of a decoded bar event (DESIGN §3)."""
    problems: list[Problem] = []
    if symbols is not None and event.symbol not in symbols:
        problems.append(
            Problem(
                ErrorCode.SYMBOL_NOT_ALLOWED,
                f"symbol {event.symbol} is not allowlisted",
                "$.symbol",
            )
        )
    if timeframes is not None and event.tf not in timeframes:
        problems.append(
            Problem(
                ErrorCode.TF_NOT_ALLOWED, f"timeframe {event.tf.value} is not allowlisted", "$.tf"
            )
        )
    expected_open = bucket_open(event.open_ms, event.tf, calendar)
    if expected_open != event.open_ms:
        problems.append(
            Problem(
                ErrorCode.UNALIGNED_OPEN,
                f"open_ms {event.open_ms} is not a {event.tf.value} bucket boundary "
                f"(the bucket containing it opens at {expected_open})",
                "$.open_ms",
            )
        )
    if event.close_ms != event.open_ms + event.tf.ms - 1:
        problems.append(
            Problem(
                ErrorCode.BAD_CLOSE,
                f"close_ms {event.close_ms} != open_ms + {event.tf.ms} - 1 = "
                f"{event.open_ms + event.tf.ms - 1}",
                "$.close_ms",
            )
        )
    prices = (event.open, event.high, event.low, event.close)
    if not all(math.isfinite(p) for p in prices) or not (
        event.low <= min(event.open, event.close) <= max(event.open, event.close) <= event.high
    ):
        problems.append(
            Problem(
                ErrorCode.OHLC_ORDER,
                f"OHLC order broken: need low <= min(open, close) <= max(open, close) <= high, "
                f"got o={event.open} h={event.high} l={event.low} c={event.close}",
            )
        )
    if event.complete:
        if event.event_ts != event.close_ms:
            problems.append(
                Problem(
                    ErrorCode.FINAL_EVENT_TS,
                    f"final bar has event_ts {event.event_ts}, "
                    f"must equal close_ms {event.close_ms}",
                    "$.event_ts",
                )
            )
        if event.source not in FINAL_SOURCES:
            problems.append(
                Problem(
                    ErrorCode.FINAL_SOURCE,
                    f"final bar has source {event.source.value}, must be history or derived",
                    "$.source",
                )
            )
    else:
        if event.source is not Source.STREAM:
            problems.append(
                Problem(
                    ErrorCode.PREVIEW_SOURCE,
                    f"preview bar has source {event.source.value}, must be stream",
                    "$.source",
                )
            )
        if not event.open_ms <= event.event_ts <= event.close_ms:
            problems.append(
                Problem(
                    ErrorCode.PREVIEW_EVENT_TS,
                    f"preview event_ts {event.event_ts} is outside its bar "
                    f"[{event.open_ms}, {event.close_ms}]",
                    "$.event_ts",
                )
            )
    return problems


def clean_final(event: OhlcvEvent, symbol: str, tf: Timeframe) -> bool:
    """True when `event` is a final `symbol`/`tf` bar on its bucket with sound OHLC: exactly
    when `bar_problems(event, calendar, symbols={symbol}, timeframes={tf})` finds nothing and
    `event.complete is True`, for a timeframe aligned to the epoch (up to 1h, where the
    calendar plays no part). One short-circuit expression for per-bar hot paths; a False says
    only "ask bar_problems why"."""
    open_ms, low, high = event.open_ms, event.low, event.high
    size = tf.ms
    return (
        not tf.session_aligned
        and event.tf is tf
        and event.symbol == symbol
        and event.complete is True
        and type(open_ms) is int
        and RANGE_START_MS <= open_ms < RANGE_END_MS
        and open_ms % size == 0
        and event.close_ms == open_ms + size - 1
        and event.event_ts == event.close_ms
        and event.source in FINAL_SOURCES
        and low <= event.open <= high
        and low <= event.close <= high
        and -math.inf < low
        and high < math.inf
    )


def validate_event(
    data: bytes | str | dict[str, Any],
    calendar: HasDayGrid,
    *,
    symbols: Collection[str] | None = None,
    timeframes: Collection[Timeframe] | None = None,
) -> Checked[OhlcvEvent]:
    """Schema and invariants of one `ohlcv_event_v1` payload."""
    checked = decode_checked(data, OhlcvEvent)
    if checked.value is None:
        return checked
    problems = bar_problems(checked.value, calendar, symbols=symbols, timeframes=timeframes)
    return Checked(checked.value, tuple(problems))


def validate_tick(data: bytes | str | dict[str, Any]) -> Checked[Tick]:
    """Schema of one `tick_v1` payload (policy checks such as spread live in tick validation)."""
    return decode_checked(data, Tick)


def validate_command(data: bytes | str | dict[str, Any]) -> Checked[Command]:
    """Schema of one `commands_v1` payload."""
    return decode_checked(data, Command)  # type: ignore[arg-type]


def validate_status(data: bytes | str | dict[str, Any]) -> Checked[StatusV2]:
    """Schema of one `status_v2` payload."""
    return decode_checked(data, StatusV2)


def hint_problems(hint: SmcHint) -> list[Problem]:
    """Cross-field invariants of a decoded `smc_hint_v1` (DESIGN §15)."""
    problems: list[Problem] = []
    if hint.confirm_ts < hint.anchor_ts:
        problems.append(
            Problem(
                ErrorCode.HINT_CONFIRM_BEFORE_ANCHOR,
                f"confirm_ts {hint.confirm_ts} is before anchor_ts {hint.anchor_ts}",
                "$.confirm_ts",
            )
        )
    expected_id = hint_id(hint.symbol, hint.tf, hint.kind, hint.direction, hint.anchor_ts)
    if hint.id != expected_id:
        problems.append(
            Problem(ErrorCode.HINT_ID, f"id {hint.id!r} should be {expected_id!r}", "$.id")
        )
    has_price = hint.price is not None
    has_zone = hint.top is not None and hint.bottom is not None
    half_zone = (hint.top is None) != (hint.bottom is None)
    if hint.kind in PRICE_KINDS and (not has_price or hint.top is not None or half_zone):
        problems.append(
            Problem(ErrorCode.HINT_LEVELS, f"{hint.kind.value} carries price only", "$.price")
        )
    if hint.kind in ZONE_KINDS and (not has_zone or has_price):
        problems.append(
            Problem(
                ErrorCode.HINT_LEVELS, f"{hint.kind.value} carries top and bottom only", "$.top"
            )
        )
    if has_zone and hint.top is not None and hint.bottom is not None and hint.bottom > hint.top:
        problems.append(
            Problem(
                ErrorCode.HINT_ZONE_ORDER,
                f"bottom {hint.bottom} is above top {hint.top}",
                "$.bottom",
            )
        )
    if (hint.ref is not None) != (hint.kind in REF_KINDS):
        wanted = "needs" if hint.kind in REF_KINDS else "takes no"
        problems.append(Problem(ErrorCode.HINT_REF, f"{hint.kind.value} {wanted} ref", "$.ref"))
    return problems


def validate_hint(data: bytes | str | dict[str, Any]) -> Checked[SmcHint]:
    """Schema and invariants of one `smc_hint_v1` payload."""
    checked = decode_checked(data, SmcHint)
    if checked.value is None:
        return checked
    return Checked(checked.value, tuple(hint_problems(checked.value)))
