"""The requests and answers of the execution control socket (`fxconnector exec`, DESIGN §16).

Wire: length-prefixed JSON frames (`core.utils.frames`), one request then one answer, as many
times as the client likes on one connection. A request is one of the closed structs below,
tagged by `op`; an answer is `{"ok": true, "result": {...}}` or
`{"ok": false, "error": {"code": CODE, "message": TEXT}}` with a stable code (`ControlErrorCode`).
The intent itself is validated against `intent_v1` by the server (a bad intent is
`bad_intent`), so a client cannot skip the check.
Pure: no I/O here; both the server (runtime) and the Python client import it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import msgspec

from fxconnector.core.model.exec_event import Decision, OrderEvent, RiskReason

#: The protocol version a client announces in every request (`v`).
PROTOCOL_VERSION: Final = 1
IntentId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class ControlErrorCode(StrEnum):
    """Why a request was not carried out (a risk deny is an answer, not an error)."""

    BAD_REQUEST = "bad_request"  # not a request of this protocol
    BAD_INTENT = "bad_intent"  # the intent breaks intent_v1
    UNKNOWN_INTENT = "unknown_intent"  # status/cancel of an intent the journal does not hold
    NOT_READY = "not_ready"  # still replaying or reconciling: try again shortly
    INTERNAL = "internal"  # a bug of ours (the process logs it)


class _Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="op"):
    v: Literal[1] = PROTOCOL_VERSION


class SubmitRequest(_Request, frozen=True, tag="submit"):
    """Submit an intent (`intent_v1` JSON object)."""

    intent: dict[str, Any] = msgspec.field(default_factory=dict)


class StatusRequest(_Request, frozen=True, tag="status"):
    """The order of an intent, as the journal holds it."""

    intent_id: IntentId = ""


class CancelRequest(_Request, frozen=True, tag="cancel"):
    """Cancel the order of an intent (only a working order can be cancelled)."""

    intent_id: IntentId = ""


class RiskRequest(_Request, frozen=True, tag="risk"):
    """Switch the trading state: halt (only cancels), reduce (only reducing), resume."""

    action: Literal["halt", "reduce", "resume"] = "halt"
    reason: Reason = "operator"


Request = SubmitRequest | StatusRequest | CancelRequest | RiskRequest


class SubmitResult(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The answer to submit, status and cancel: the intent's decision and its order.

    `order` is None when the intent was denied (no order exists). `duplicate` is true when the
    journal already held the intent (a resubmit): nothing new was sent to the broker.
    """

    intent_id: str
    decision: Decision
    reason: RiskReason | None = None
    detail: str = ""
    duplicate: bool = False
    order: OrderEvent | None = None


def error_answer(code: ControlErrorCode, message: str) -> dict[str, Any]:
    """The answer of a request that was not carried out."""
    return {"ok": False, "error": {"code": code.value, "message": message[:500]}}


def ok_answer(result: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "result": result}
