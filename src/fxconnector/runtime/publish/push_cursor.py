"""Push cursors: where an SSE or WebSocket client stands in the events stream(s).

Rules:
- A cursor is a position per events stream the client reads (`Positions`: stream key ->
  `(ms, seq)`), compared as integer pairs.
- Single-node layout: one stream, so the cursor is that stream's id, `<ms>-<seq>` (what
  `/api/bars` gives as its snapshot cursor and what SSE sends as `id:`), as before.
- Cluster layout: one stream per symbol. A client of one symbol has that stream's id as its
  cursor (again what `/api/bars` of that symbol gives). A client of several symbols gets a
  composite cursor, `SYM:<ms>-<seq>,SYM:<ms>-<seq>` (its symbols in sorted order, each with the
  newest id of its stream already passed on to it); SSE sends it as the event `id:`, so
  `Last-Event-ID` resumes every stream exactly where it was.
- A plain id given to a multi-symbol cluster client applies to each of its streams: Redis ids
  are milliseconds of the server's clock, so that is "everything after that time" (exact for
  the stream it came from). A composite cursor must name every selected symbol (else 422);
  symbols it names but the client did not select are ignored. The single layout refuses a
  composite cursor.
- Parsing raises ApiError (422 `invalid_parameter`); nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

from fxconnector.runtime.publish.http_common import ApiError, quote, stream_id
from fxconnector.runtime.publish.keys import SurfaceKeys
from fxconnector.runtime.publish.surface_reader import parse_stream_id

Pos = tuple[int, int]
Positions = dict[str, Pos]

ZERO: Final[Pos] = (0, 0)
_MAX_SYMBOLS: Final = 1000


def format_id(pos: Pos) -> str:
    return f"{pos[0]}-{pos[1]}"


def streams_of(keys: SurfaceKeys, symbols: Iterable[str]) -> dict[str, str]:
    """Stream key -> the symbol it stands for in a cursor ("" in the single layout)."""
    if not keys.cluster:
        return {keys.events: ""}
    return {keys.events_for(symbol): symbol for symbol in sorted(symbols)}


def smc_streams_of(keys: SurfaceKeys, symbols: Iterable[str]) -> dict[str, str]:
    """As `streams_of`, for the SMC hint stream(s) (`kinds=smc`)."""
    if not keys.cluster:
        return {keys.smc_events: ""}
    return {keys.smc_events_for(symbol): symbol for symbol in sorted(symbols)}


def parse_cursor(
    text: str,
    name: str,
    keys: SurfaceKeys,
    symbols: Iterable[str],
    streams_for: Callable[[SurfaceKeys, Iterable[str]], dict[str, str]] = streams_of,
) -> Positions:
    """The positions a cursor text stands for, for a client of `symbols` (ApiError if bad);
    `streams_for` names the streams (the bar events', or `smc_streams_of`)."""
    streams = streams_for(keys, symbols)
    if ":" not in text:
        pos = _pos(text, name)
        return dict.fromkeys(streams, pos)
    if not keys.cluster:
        raise ApiError(
            422, "invalid_parameter", f"{name} must be a stream id <ms>-<seq>, got {quote(text)}"
        )
    given: dict[str, Pos] = {}
    parts = text.split(",")
    if len(parts) > _MAX_SYMBOLS:
        raise ApiError(422, "invalid_parameter", f"{name} names too many symbols")
    for part in parts:
        symbol, _, id_text = part.partition(":")
        if not symbol or symbol in given:
            raise ApiError(
                422,
                "invalid_parameter",
                f"{name} must be SYM:<ms>-<seq>,... with each symbol once, got {quote(text)}",
            )
        given[symbol] = _pos(id_text, name)
    out: Positions = {}
    for stream, symbol in streams.items():
        if symbol not in given:
            raise ApiError(422, "invalid_parameter", f"{name} has no position for {quote(symbol)}")
        out[stream] = given[symbol]
    return out


def format_cursor(positions: Mapping[str, Pos], streams: Mapping[str, str]) -> str:
    """The cursor text of `positions` (see the module rules); `streams` as `streams_of` gives."""
    if len(streams) == 1:
        (stream,) = streams
        return format_id(positions[stream])
    return ",".join(
        f"{symbol}:{format_id(positions[stream])}" for stream, symbol in streams.items()
    )


def _pos(text: str, name: str) -> Pos:
    return parse_stream_id(stream_id(text, name))
