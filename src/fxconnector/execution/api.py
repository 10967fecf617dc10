"""The values the execution core's calls take and give: its settings, `Output` (events to
journal, then commands to send) and `Submission`; and the schema check that keeps the journal
readable. Pure; re-exported by `core`.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from fxconnector.core.errors import ContractViolation
from fxconnector.core.model.exec_event import ExecEvent
from fxconnector.core.model.intent import OrderIntent
from fxconnector.execution.messages import GatewayCommand
from fxconnector.execution.orders import Order
from fxconnector.execution.risk.validator import Allow, Deny


def schema_problem(value: msgspec.Struct) -> str | None:
    """Why a struct built in Python breaks its own schema (constructors do not check the
    constraints; decoding does), or None. Keeps the journal readable: every event is built from
    values that passed this or came from a decoder."""
    try:
        msgspec.convert(msgspec.to_builtins(value), type(value))
    except msgspec.ValidationError as exc:
        return str(exc)
    return None


def replace_ts(intent: OrderIntent, ts: int) -> OrderIntent:
    """The intent with another `ts`."""
    return msgspec.structs.replace(intent, ts=ts)


@dataclass(frozen=True, slots=True)
class ExecSettings:
    """Time bounds of the order lifecycle (ms).

    - `ack_timeout_ms`: a SUBMITTED order with no evidence for this long becomes UNKNOWN;
    - `query_interval_ms`: how often an UNKNOWN order (or an unanswered cancel) is queried;
    - `unknown_halt_ms`: an order UNKNOWN for this long halts all trading;
    - `not_found_grace_ms`: a broker's "no such order" is believed only this long after the
      submit (before, the order may still be on its way): then the order is REJECTED.
    """

    ack_timeout_ms: int = 10_000
    query_interval_ms: int = 5_000
    unknown_halt_ms: int = 60_000
    not_found_grace_ms: int = 30_000

    def __post_init__(self) -> None:
        for name in ("ack_timeout_ms", "query_interval_ms", "unknown_halt_ms"):
            if getattr(self, name) < 1:
                raise ContractViolation(f"{name} must be positive, got {getattr(self, name)}")
        if self.not_found_grace_ms < 0:
            raise ContractViolation("not_found_grace_ms must not be negative")


@dataclass(frozen=True, slots=True)
class Output:
    """Events to journal (then publish) and, only after that, commands to the gateway.
    `notes` are things worth a log line (evidence for an order we do not know, ...)."""

    events: tuple[ExecEvent, ...] = ()
    commands: tuple[GatewayCommand, ...] = ()
    notes: tuple[str, ...] = ()

    def __add__(self, other: Output) -> Output:
        return Output(
            self.events + other.events,
            self.commands + other.commands,
            self.notes + other.notes,
        )


@dataclass(frozen=True, slots=True)
class Submission:
    """The answer to a submit: the decision, the order (None when denied), whether the intent
    was seen before (then nothing is journaled or sent), and what to journal and send."""

    decision: Allow | Deny
    order: Order | None
    duplicate: bool
    output: Output
