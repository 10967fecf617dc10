"""The OpenAPI document of the HTTP API, written by hand (the routes are plain Starlette routes
whose parameters are parsed by hand, so there is nothing for FastAPI to infer).

Rules: every operation lists its parameters with their constraints and every status it can
answer with, each with a schema; the public contracts' JSON Schemas (`ohlcv_event_v1`,
`tick_v1`, `status_v2`, `status_symbol_v1`) are the components, their `$defs` moved beside them,
so a client or a fuzzer can check every answer against the same contract the rest of the system
obeys.
"""

from __future__ import annotations

from typing import Any, Final

from fxconnector.core.contracts import ContractName, load_schema
from fxconnector.core.model.bar import SYMBOL_PATTERN
from fxconnector.core.time_geom import RANGE_END_MS
from fxconnector.runtime.publish.http_common import JSON, ApiDeps

DEFAULT_LIMIT: Final = 500
MAX_LIMIT: Final = 5000
_REF: Final = "#/components/schemas/"
Paths = dict[str, dict[str, Any]]


def document(paths: Paths, *, title: str, version: str, description: str) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document over `paths`."""
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {"schemas": _components()},
    }


def operation(operation_id: str, summary: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A GET path item."""
    return {"get": {"operationId": operation_id, "summary": summary, **doc}}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


def query_parameter(
    name: str, schema: dict[str, Any], description: str, *, required: bool = False
) -> dict[str, Any]:
    """One OpenAPI query parameter object."""
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def errors(*statuses: int) -> dict[str, Any]:
    """Error responses (the JSON error shape) for `statuses`."""
    what = {
        400: "Unknown, repeated or inconsistent parameters",
        404: "Unknown symbol or timeframe (or, for /api/smc, the SMC layer is off)",
        409: "A range (from_ms/to_ms) of another process's symbol: served from Redis alone",
        422: "Missing or malformed parameter",
        503: "Redis is unavailable",
    }
    return {str(status): _json(ref("Error"), what[status]) for status in statuses}


def json_doc(component: str, *statuses: int) -> dict[str, Any]:
    """A GET answering `component` as JSON, or the error shape with one of `statuses`."""
    return {"responses": {"200": _json(ref(component), "OK"), **errors(*statuses)}}


def ready_doc() -> dict[str, Any]:
    doc = json_doc("Ready", 400)
    doc["responses"]["503"] = _json(ref("NotReady"), "Not ready, with the reason")
    return doc


def metrics_doc() -> dict[str, Any]:
    text = {"schema": {"type": "string"}}
    return {
        "responses": {"200": {"description": "OK", "content": {"text/plain": text}}, **errors(400)}
    }


def status_doc(deps: ApiDeps) -> dict[str, Any]:
    """`/api/status[?symbol=]`: the summary, or one symbol's detail."""
    doc = json_doc("Status", 400, 404)
    doc["responses"]["200"] = _json(
        {"anyOf": [ref("Status"), ref("StatusSymbol")]},
        "This process's summary (status_v2); with `symbol`, that symbol's detail "
        "(status_symbol_v1)",
    )
    doc["parameters"] = [
        query_parameter(
            "symbol",
            _symbol_schema(deps),
            "A served symbol: answer its detail instead of the summary",
        )
    ]
    return doc


def _symbol_schema(deps: ApiDeps) -> dict[str, Any]:
    """A served symbol: an enum of this process's own, open in a shared namespace (symbols
    other processes start later are served too: see `/api/symbols`)."""
    if deps.served is not None and deps.served.shared:
        return {"type": "string", "pattern": SYMBOL_PATTERN}
    return {"type": "string", "enum": list(deps.symbols)}


def bars_doc(deps: ApiDeps) -> dict[str, Any]:
    q = query_parameter
    epoch = {"type": "integer", "minimum": 0, "maximum": RANGE_END_MS}
    doc = json_doc("BarsWindow", 400, 404, 409, 422, 503)
    doc["parameters"] = [
        q("symbol", _symbol_schema(deps), "Instrument", required=True),
        q(
            "tf",
            {"type": "string", "enum": [tf.value for tf in deps.timeframes]},
            "Timeframe",
            required=True,
        ),
        q(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            "At most this many bars: the first from from_ms when given, else the newest",
        ),
        q("from_ms", epoch, "Range start, UTC epoch ms (bars with open_ms >= from_ms)"),
        q("to_ms", epoch, "Range end, UTC epoch ms, exclusive (bars with open_ms < to_ms)"),
        q(
            "include_preview",
            {"type": "boolean", "default": False},
            "Add the current preview when it opens after the last final",
        ),
    ]
    return doc


def ticks_doc(deps: ApiDeps) -> dict[str, Any]:
    """`/api/ticks[?symbols=]`: the tick cache."""
    doc = json_doc("Ticks", 400, 404, 422, 503)
    doc["parameters"] = [
        query_parameter(
            "symbols",
            {"type": "string"},
            "Comma-separated served symbols (default: every served symbol); a symbol without "
            "a tick yet is left out of the answer",
        )
    ]
    return doc


def _contract(name: ContractName, prefix: str, components: dict[str, Any]) -> dict[str, Any]:
    """A contract's schema as an OpenAPI component, its `$defs` moved beside it."""
    schema = load_schema(name)
    defs: dict[str, Any] = schema.pop("$defs", {})
    schema.pop("$schema", None)
    schema.pop("$id", None)

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {key: rewrite(value) for key, value in node.items()}
            ref = out.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                out["$ref"] = _REF + prefix + ref.removeprefix("#/$defs/")
            return out
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    for def_name, definition in defs.items():
        components[prefix + def_name] = rewrite(definition)
    result: dict[str, Any] = rewrite(schema)
    return result


def _components() -> dict[str, Any]:
    components: dict[str, Any] = {}
    nullable_string = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    components["BarEvent"] = _contract(ContractName.OHLCV_EVENT_V1, "BarEvent_", components)
    components["Tick"] = _contract(ContractName.TICK_V1, "Tick_", components)
    components["Ticks"] = _object(ticks={"type": "array", "items": ref("Tick")})
    components["Status"] = _contract(ContractName.STATUS_V2, "Status_", components)
    components["StatusSymbol"] = _contract(
        ContractName.STATUS_SYMBOL_V1, "StatusSymbol_", components
    )
    components["StatusProcesses"] = _object(processes={"type": "array", "items": ref("Status")})
    components["Error"] = _object(
        error=_object(code={"type": "string"}, message={"type": "string"})
    )
    components["BarsWindow"] = _object(
        symbol={"type": "string"},
        tf={"type": "string"},
        bars={"type": "array", "items": ref("BarEvent")},
        preview={"anyOf": [ref("BarEvent"), {"type": "null"}]},
        cursor=nullable_string,
    )
    components["SmcHint"] = _contract(ContractName.SMC_HINT_V1, "SmcHint_", components)
    components["SmcWindow"] = _object(
        symbol={"type": "string"},
        tf={"type": "string"},
        cursor={"type": "string", "pattern": r"^\d+-\d+$"},
        hints={"type": "array", "items": ref("SmcHint")},
    )
    components["Symbols"] = _object(
        symbols={"type": "array", "items": {"type": "string"}},
        timeframes={"type": "array", "items": {"type": "string"}},
    )
    components["Live"] = _object(status={"const": "live"})
    components["Ready"] = _object(status={"const": "ready"})
    components["NotReady"] = _object(status={"const": "not_ready"}, reason={"type": "string"})
    return components


def _object(**properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


#: For route modules that document their own components (`exec_routes`).
contract_component = _contract
closed_object = _object
