"""Validation of the execution contracts: `intent_v1` and `exec_event_v1` (DESIGN §16).

Rules: as in `validator.py`: schema by decoding into the frozen models, then the cross-field
rules the schema cannot say; never raises on bad input, returns problems with stable codes.
"""

from __future__ import annotations

from typing import Any

from fxconnector.core.model.exec_event import Decision, ExecEvent, RiskEvent
from fxconnector.core.model.intent import OrderIntent, OrderType, Side, TimeInForce
from fxconnector.core.validation.validator import Checked, ErrorCode, Problem, decode_checked


def intent_problems(intent: OrderIntent) -> list[Problem]:
    """Cross-field rules of a decoded intent."""
    problems: list[Problem] = []
    if intent.type is OrderType.MARKET:
        if intent.price is not None:
            problems.append(
                Problem(
                    ErrorCode.INTENT_PRICE_ON_MARKET,
                    "a market order takes no price; use a limit order to bound the price",
                    "$.price",
                )
            )
        if intent.time_in_force is TimeInForce.GTC:
            problems.append(
                Problem(
                    ErrorCode.INTENT_TIME_IN_FORCE,
                    "a market order is FOK or IOC, never GTC",
                    "$.time_in_force",
                )
            )
    elif intent.price is None:
        problems.append(
            Problem(
                ErrorCode.INTENT_PRICE_REQUIRED,
                f"a {intent.type.value} order needs a price",
                "$.price",
            )
        )
    problems.extend(_bracket_problems(intent))
    return problems


def _bracket_problems(intent: OrderIntent) -> list[Problem]:
    """A buy's stop loss lies below its entry and its take profit above; a sell's the other way."""
    sign = 1 if intent.side is Side.BUY else -1
    out: list[Problem] = []
    if (
        intent.stop_loss is not None
        and intent.take_profit is not None
        and sign * (intent.take_profit - intent.stop_loss) <= 0
    ):
        out.append(
            Problem(
                ErrorCode.INTENT_BRACKET_SIDE,
                f"a {intent.side.value} needs stop_loss "
                f"{'below' if sign > 0 else 'above'} take_profit, got "
                f"stop_loss={intent.stop_loss} take_profit={intent.take_profit}",
                "$.stop_loss",
            )
        )
    if intent.price is None:
        return out
    if intent.stop_loss is not None and sign * (intent.price - intent.stop_loss) <= 0:
        out.append(
            Problem(
                ErrorCode.INTENT_BRACKET_SIDE,
                f"a {intent.side.value} at {intent.price} needs its stop_loss "
                f"{'below' if sign > 0 else 'above'} the price, got {intent.stop_loss}",
                "$.stop_loss",
            )
        )
    if intent.take_profit is not None and sign * (intent.take_profit - intent.price) <= 0:
        out.append(
            Problem(
                ErrorCode.INTENT_BRACKET_SIDE,
                f"a {intent.side.value} at {intent.price} needs its take_profit "
                f"{'above' if sign > 0 else 'below'} the price, got {intent.take_profit}",
                "$.take_profit",
            )
        )
    return out


def validate_intent(data: bytes | str | dict[str, Any]) -> Checked[OrderIntent]:
    """Schema and cross-field rules of one `intent_v1` payload."""
    checked = decode_checked(data, OrderIntent)
    if checked.value is None:
        return checked
    return Checked(checked.value, tuple(intent_problems(checked.value)))


def validate_exec_event(data: bytes | str | dict[str, Any]) -> Checked[ExecEvent]:
    """Schema of one `exec_event_v1` payload; a risk event has a reason exactly when it denies."""
    checked: Checked[ExecEvent] = decode_checked(data, ExecEvent)  # type: ignore[arg-type]
    event = checked.value
    if not isinstance(event, RiskEvent):
        return checked
    if (event.reason is None) == (event.decision is Decision.DENY):
        problem = Problem(
            ErrorCode.EXEC_RISK_REASON,
            f"a risk event with decision {event.decision.value} "
            f"{'needs' if event.reason is None else 'takes no'} reason",
            "$.reason",
        )
        return Checked(event, (problem,))
    return checked
