"""Read-only HTTP routes of the execution layer: `/api/orders`, `/api/positions`, `/api/risk`,
`/api/fills`, and
`/api/exec` (the live exec process's `exec_process_v1`, or null when none runs).

Rules:
- Read-only like the rest of the API: every value comes from the keys `fxconnector exec`
  publishes (`keys.exec_orders`, `exec_positions`, `exec_risk`), one HGETALL per request.
  Nothing here submits, cancels or switches anything: intents arrive only over the exec
  process's control socket.
- Every value read back is decoded into its `exec_event_v1` model (closed, constrained) and
  must be of the key's kind and agree with its hash field; an invalid one is left out of the
  answer and counted in `deps.rejects` (status errors[]), never served.
- `/api/fills` reads the fills out of `NS:exec:events` (the stream's id is `0-SEQ`, the journal
  sequence): the newest `limit` fills among the newest FILL_SCAN events, or the fills after
  `after_seq` (the `seq` of a previous answer: poll with it). Its `seq` is the newest event
  scanned (the stream's last one when nothing was scanned): a `seq` below the `after_seq`
  asked means the stream restarted from a new journal, so read again without `after_seq`.
  The stream is trimmed (`execution.events_maxlen`): fills older than what it keeps are gone
  from this route (the orders hash still holds each order's cumulative fill).
- Answers are sorted (orders newest first by journal `seq`; positions and states by key) and
  canonical JSON. Filters are strict query parameters (an unknown one is a 400).
- Registered by `routes(deps)` and documented by `components()`: `http_api` adds both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from fxconnector.core.contracts import ContractName
from fxconnector.core.model.bar import SYMBOL_PATTERN
from fxconnector.core.model.exec_event import (
    ExecEvent,
    FillEvent,
    OrderEvent,
    OrderState,
    PositionEvent,
    TradingStateEvent,
)
from fxconnector.core.model.exec_process import ExecProcessStatus
from fxconnector.core.model.intent import ID_PATTERN
from fxconnector.core.utils.json_codec import encode
from fxconnector.runtime.publish import http_common as params
from fxconnector.runtime.publish import openapi_doc as doc
from fxconnector.runtime.publish.http_common import JSON, ApiDeps, ApiError

E = TypeVar("E", OrderEvent, PositionEvent, TradingStateEvent)
Endpoint = Callable[[Request], Any]
#: (path, endpoint, operation id, summary, OpenAPI operation doc) of each route.
RouteSpec = tuple[str, Endpoint, str, str, dict[str, Any]]

DEFAULT_ORDERS: Final = 200
MAX_ORDERS: Final = 5000
_DECODER: Final = msgspec.json.Decoder(ExecEvent)
_PROCESS_DECODER: Final = msgspec.json.Decoder(ExecProcessStatus)
_ORDER_PARAMS: Final = ("trader", "symbol", "state", "limit")
DEFAULT_FILLS: Final = 500
MAX_FILLS: Final = 5000
#: Events of `NS:exec:events` one `/api/fills` request reads at most.
FILL_SCAN: Final = 20_000
_FILL_PARAMS: Final = ("trader", "symbol", "after_seq", "limit")


def _checked(
    raw: dict[str, bytes],
    kind: type[E],
    key_of: Callable[[E], str],
    deps: ApiDeps,
    where: str,
) -> list[E]:
    out: list[E] = []
    for name, value in raw.items():
        try:
            event = _DECODER.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            deps.rejects.add("exec_event", f"{where}[{name[:60]}]", str(exc))
            continue
        if not isinstance(event, kind) or key_of(event) != name:
            deps.rejects.add(
                "exec_event", f"{where}[{name[:60]}]", f"a {event.__class__.__name__} at this field"
            )
            continue
        out.append(event)
    return out


def _pattern(query: dict[str, str], name: str, pattern: str) -> str | None:
    value = query.get(name)
    if value is not None and re.fullmatch(pattern, value) is None:
        raise ApiError(422, "invalid_parameter", f"{name}: {params.quote(value)} is not valid")
    return value


def _fills_of(entries: list[tuple[str, bytes]], deps: ApiDeps, where: str) -> list[FillEvent]:
    """The valid fill events of `entries` (each must be the event of its id's seq)."""
    out: list[FillEvent] = []
    for entry_id, value in entries:
        try:
            event = _DECODER.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            deps.rejects.add("exec_event", f"{where}[{entry_id}]", str(exc))
            continue
        if entry_id != f"0-{event.seq}":
            deps.rejects.add("exec_event", f"{where}[{entry_id}]", f"seq {event.seq} at this id")
            continue
        if isinstance(event, FillEvent):
            out.append(event)
    return out


def _seq_of(entry_id: str) -> int:
    return int(entry_id.partition("-")[2] or 0)


def position_key(trader: str, symbol: str) -> str:
    """The field of a position in `NS:exec:positions`."""
    return f"{trader}:{symbol}"


def routes(deps: ApiDeps) -> list[RouteSpec]:
    """The execution routes over `deps.reader` (the API's Redis client)."""
    keys = deps.reader.keys

    async def get_orders(request: Request) -> Response:
        query = params.check_names(request.query_params, _ORDER_PARAMS)
        trader = _pattern(query, "trader", ID_PATTERN)
        symbol = _pattern(query, "symbol", SYMBOL_PATTERN)
        state_text = query.get("state")
        state = None
        if state_text is not None:
            try:
                state = OrderState(state_text)
            except ValueError:
                known = ", ".join(s.value for s in OrderState)
                raise ApiError(
                    422,
                    "invalid_parameter",
                    f"state: {params.quote(state_text)} is not an order state ({known})",
                ) from None
        limit = params.integer(
            query, "limit", minimum=1, maximum=MAX_ORDERS, default=DEFAULT_ORDERS
        )
        assert limit is not None
        raw = await deps.reader.hash_values(keys.exec_orders)
        orders = _checked(raw, OrderEvent, lambda e: e.intent_id, deps, keys.exec_orders)
        chosen = [
            o
            for o in orders
            if (trader is None or o.trader == trader)
            and (symbol is None or o.symbol == symbol)
            and (state is None or o.state is state)
        ]
        chosen.sort(key=lambda o: o.seq, reverse=True)
        return Response(encode({"orders": chosen[:limit]}), media_type=JSON)

    async def get_positions(request: Request) -> Response:
        query = params.check_names(request.query_params, ("trader",))
        trader = _pattern(query, "trader", ID_PATTERN)
        raw = await deps.reader.hash_values(keys.exec_positions)
        positions = _checked(
            raw,
            PositionEvent,
            lambda e: position_key(e.trader, e.symbol),
            deps,
            keys.exec_positions,
        )
        chosen = sorted(
            (p for p in positions if trader is None or p.trader == trader),
            key=lambda p: (p.trader, p.symbol),
        )
        return Response(encode({"positions": chosen}), media_type=JSON)

    async def get_fills(request: Request) -> Response:
        query = params.check_names(request.query_params, _FILL_PARAMS)
        trader = _pattern(query, "trader", ID_PATTERN)
        symbol = _pattern(query, "symbol", SYMBOL_PATTERN)
        after = params.integer(query, "after_seq", minimum=0, maximum=2**63 - 1, default=None)
        limit = params.integer(query, "limit", minimum=1, maximum=MAX_FILLS, default=DEFAULT_FILLS)
        assert limit is not None
        stream = keys.exec_events
        entries = await deps.reader.stream_entries(
            stream, after=None if after is None else f"0-{after}", count=FILL_SCAN
        )
        newest = entries[-1][0] if entries else await deps.reader.last_id(stream)
        seq = _seq_of(newest)
        fills = [
            f
            for f in _fills_of(entries, deps, stream)
            if (trader is None or f.trader == trader) and (symbol is None or f.symbol == symbol)
        ]
        if after is None:
            fills = fills[-limit:]
        elif len(fills) > limit:
            fills = fills[:limit]
            seq = fills[-1].seq  # the rest on the next request
        return Response(encode({"fills": fills, "seq": seq}), media_type=JSON)

    async def get_risk(request: Request) -> Response:
        params.check_names(request.query_params, ())
        raw = await deps.reader.hash_values(keys.exec_risk)
        states = _checked(raw, TradingStateEvent, lambda e: e.scope, deps, keys.exec_risk)
        states.sort(key=lambda s: s.scope)
        return Response(encode({"trading_states": states}), media_type=JSON)

    async def get_exec(request: Request) -> Response:
        params.check_names(request.query_params, ())
        raw = await deps.reader.value(keys.exec_process)
        process = None
        if raw is not None:
            try:
                process = _PROCESS_DECODER.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                deps.rejects.add("exec_process", keys.exec_process, str(exc))
        return Response(encode({"process": process}), media_type=JSON)

    q = doc.query_parameter
    orders_doc = doc.json_doc("Orders", 400, 422, 503)
    orders_doc["parameters"] = [
        q("trader", {"type": "string", "pattern": ID_PATTERN}, "Only this trader's orders"),
        q("symbol", {"type": "string", "pattern": SYMBOL_PATTERN}, "Only this symbol's orders"),
        q("state", {"type": "string", "enum": [s.value for s in OrderState]}, "Only this state"),
        q(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_ORDERS, "default": DEFAULT_ORDERS},
            "At most this many orders, newest first",
        ),
    ]
    positions_doc = doc.json_doc("Positions", 400, 422, 503)
    positions_doc["parameters"] = [
        q("trader", {"type": "string", "pattern": ID_PATTERN}, "Only this trader's positions")
    ]
    fills_doc = doc.json_doc("Fills", 400, 422, 503)
    fills_doc["parameters"] = [
        q("trader", {"type": "string", "pattern": ID_PATTERN}, "Only this trader's fills"),
        q("symbol", {"type": "string", "pattern": SYMBOL_PATTERN}, "Only this symbol's fills"),
        q(
            "after_seq",
            {"type": "integer", "minimum": 0},
            "Only fills after this journal seq (the seq of a previous answer)",
        ),
        q(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_FILLS, "default": DEFAULT_FILLS},
            "At most this many fills (the newest without after_seq, the oldest with it)",
        ),
    ]
    return [
        (
            "/api/orders",
            get_orders,
            "orders",
            "Orders of the execution process (their latest exec_event_v1 order event), newest "
            "first",
            orders_doc,
        ),
        (
            "/api/positions",
            get_positions,
            "positions",
            "Open and closed positions per trader and symbol (exec_event_v1 position events)",
            positions_doc,
        ),
        (
            "/api/fills",
            get_fills,
            "fills",
            "Fills (exec_event_v1 fill events) from the execution events stream, oldest first, "
            "with the seq to poll from",
            fills_doc,
        ),
        (
            "/api/risk",
            get_risk,
            "risk",
            "Trading states (ACTIVE, REDUCING, HALTED) per trader and for everyone (*)",
            doc.json_doc("Risk", 400, 503),
        ),
        (
            "/api/exec",
            get_exec,
            "exec",
            "The live execution process (exec_process_v1: gateway, trading state, open orders "
            "and positions), or null when none runs",
            doc.json_doc("Exec", 400, 503),
        ),
    ]


def components() -> dict[str, Any]:
    """The OpenAPI components of the execution routes (exec_event_v1 and the answers)."""
    out: dict[str, Any] = {}
    out["ExecEvent"] = doc.contract_component(ContractName.EXEC_EVENT_V1, "ExecEvent_", out)
    events = {"type": "array", "items": doc.ref("ExecEvent")}
    out["Orders"] = doc.closed_object(orders=events)
    out["Positions"] = doc.closed_object(positions=events)
    out["Risk"] = doc.closed_object(trading_states=events)
    out["Fills"] = doc.closed_object(
        fills=events, seq={"type": "integer", "minimum": 0, "description": "Newest event read"}
    )
    out["ExecProcess"] = doc.contract_component(ContractName.EXEC_PROCESS_V1, "ExecProcess_", out)
    out["Exec"] = doc.closed_object(process={"anyOf": [doc.ref("ExecProcess"), {"type": "null"}]})
    return out
