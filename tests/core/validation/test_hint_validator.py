"""The cross-field rules of `smc_hint_v1` (which levels a kind carries, ref, ids, time order)."""

from __future__ import annotations

from typing import Any

import pytest

from fxconnector.core.validation.validator import ErrorCode, validate_hint

ANCHOR = 1_549_238_400_000


def hint(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "symbol": "EURUSD",
        "tf": "1m",
        "kind": "swing_high",
        "id": f"EURUSD:1m:swing_high:bear:{ANCHOR}",
        "rev": 0,
        "anchor_ts": ANCHOR,
        "confirm_ts": ANCHOR + 359_999,
        "direction": "bear",
        "price": 1.1457,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def codes(payload: dict[str, Any]) -> set[ErrorCode]:
    return {p.code for p in validate_hint(payload).problems}


def test_a_valid_swing_and_a_valid_lifecycle_step() -> None:
    assert codes(hint()) == set()
    mitigated = hint(
        kind="fvg_mitigated",
        id=f"EURUSD:1m:fvg_mitigated:bull:{ANCHOR}",
        direction="bull",
        price=None,
        top=1.2,
        bottom=1.1,
        ref=f"EURUSD:1m:fvg:bull:{ANCHOR}",
    )
    assert codes(mitigated) == set()


BROKEN = [
    ({"confirm_ts": ANCHOR - 1}, ErrorCode.HINT_CONFIRM_BEFORE_ANCHOR),
    ({"id": "made-up"}, ErrorCode.HINT_ID),
    ({"price": None, "top": 1.2, "bottom": 1.1}, ErrorCode.HINT_LEVELS),
    ({"ref": "EURUSD:1m:x"}, ErrorCode.HINT_REF),
    ({"price": -1.0}, ErrorCode.OUT_OF_RANGE),
    ({"kind": "order_block"}, ErrorCode.BAD_VALUE),
    ({"extra": 1}, ErrorCode.UNKNOWN_FIELD),
]


@pytest.mark.parametrize(("changes", "code"), BROKEN)
def test_each_broken_rule_has_its_code(changes: dict[str, Any], code: ErrorCode) -> None:
    assert code in codes(hint(**changes))


def test_every_hint_code_is_covered() -> None:
    covered = {ErrorCode.HINT_ZONE_ORDER} | {code for _, code in BROKEN}
    assert {c for c in ErrorCode if c.value.startswith("hint.")} <= covered


def test_zone_kinds_need_both_edges_in_order_and_lifecycle_kinds_a_ref() -> None:
    zone = {"kind": "fvg", "id": f"EURUSD:1m:fvg:bear:{ANCHOR}", "price": None}
    assert ErrorCode.HINT_LEVELS in codes(hint(**zone, top=1.2))
    assert ErrorCode.HINT_ZONE_ORDER in codes(hint(**zone, top=1.1, bottom=1.2))
    swept = {"kind": "liquidity_swept", "id": f"EURUSD:1m:liquidity_swept:bear:{ANCHOR}"}
    assert ErrorCode.HINT_REF in codes(hint(**swept, price=None, top=1.2, bottom=1.1))
