"""`GET /api/smc` (DESIGN §15): a series' SMC hints from its Redis snapshot, validated.

Rules:
- Parameters: `symbol`, `tf` (required), `from_ms`, `to_ms` (optional, UTC epoch ms): the
  hints with `from_ms <= confirm_ts <= to_ms`, i.e. those knowable inside the range, in
  emission order. Unknown or repeated parameters are 400, a bad number 422, `from_ms > to_ms`
  400 `invalid_range`, an unknown symbol or a timeframe without SMC 404 (the codes of
  `/api/bars`).
- The answer is `{"symbol", "tf", "cursor", "hints": [...]}`: `cursor` is the SMC stream's
  newest id, read atomically with the snapshot (`SurfaceReader.smc_snapshot`: the snapshot
  reflects every hint of the series up to it, so the push stream's `kinds=smc` resumes after
  it with no gap, and a series that rarely gets a hint never hands out a trimmed id; "0-0"
  when the stream is empty), `hints` the snapshot's kept hints (every active one and the
  newest, `[smc] snapshot_hints`) as the bytes Redis held, each validated first (`check`).
- Read-only: one script call (HMGET + XREVRANGE, one slot) per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from fxconnector.core.model.bar import SYMBOL_PATTERN
from fxconnector.core.time_geom import RANGE_END_MS, Timeframe
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish import http_common as params
from fxconnector.runtime.publish import openapi_doc as doc
from fxconnector.runtime.publish.http_common import JSON, ApiDeps, ApiError
from fxconnector.runtime.smc.check import HintCheck

_PARAMS: Final = ("symbol", "tf", "from_ms", "to_ms")


@dataclass(frozen=True, slots=True)
class SmcQuery:
    symbol: str
    tf: Timeframe
    from_ms: int | None
    to_ms: int | None


def parse_smc_query(query: Mapping[str, str], deps: ApiDeps) -> SmcQuery:
    """Validate `/api/smc` parameters (ApiError with the status and code of `/api/bars`)."""
    symbol = params.symbol(params.required_text(query, "symbol"), deps.served_symbols())
    tf = params.required_text(query, "tf")
    if not deps.smc_timeframes:
        raise ApiError(404, "smc_disabled", "the SMC layer is not enabled ([smc] enabled)")
    chosen = params.timeframe(tf, deps.smc_timeframes)
    from_ms = params.epoch_ms(query, "from_ms")
    to_ms = params.epoch_ms(query, "to_ms")
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise ApiError(400, "invalid_range", f"from_ms {from_ms} is after to_ms {to_ms}")
    return SmcQuery(symbol, chosen, from_ms, to_ms)


def smc_endpoint(deps: ApiDeps, check: HintCheck) -> Callable[[Request], Awaitable[Response]]:
    """The `/api/smc` handler."""

    async def get_smc(request: Request) -> Response:
        values = params.check_names(request.query_params, _PARAMS)
        await deps.refresh_symbols()
        query = parse_smc_query(values, deps)
        raw, cursor = await deps.reader.smc_snapshot(query.symbol, query.tf)
        where = deps.reader.keys.smc_snapshot(query.symbol, query.tf)
        low = query.from_ms if query.from_ms is not None else 0
        high = query.to_ms
        kept = [
            data
            for hint, data in check.snapshot(raw, query.symbol, query.tf, where)
            if low <= hint.confirm_ts and (high is None or hint.confirm_ts <= high)
        ]
        head = encode({"cursor": cursor or "0-0", "symbol": query.symbol, "tf": query.tf.value})
        body = head[:-1] + b',"hints":[' + b",".join(kept) + b"]}"
        return Response(body, media_type=JSON)

    return get_smc


def smc_doc(deps: ApiDeps) -> dict[str, Any]:
    """The OpenAPI description of `/api/smc`."""
    q = doc.query_parameter
    epoch = {"type": "integer", "minimum": 0, "maximum": RANGE_END_MS}
    described = doc.json_doc("SmcWindow", 400, 404, 422, 503)
    described["parameters"] = [
        q("symbol", {"type": "string", "pattern": SYMBOL_PATTERN}, "Instrument", required=True),
        q(
            "tf",
            {"type": "string", "enum": [tf.value for tf in deps.smc_timeframes or deps.timeframes]},
            "Timeframe (one the SMC layer runs on; 404 smc_disabled while it is off)",
            required=True,
        ),
        q("from_ms", epoch, "Hints with confirm_ts >= from_ms (UTC epoch ms)"),
        q("to_ms", epoch, "Hints with confirm_ts <= to_ms (UTC epoch ms)"),
    ]
    return described
