"""A local OANDA v20 order peer for tests: Starlette under uvicorn on a free loopback port.

It keeps an account's books (orders, transactions with increasing ids) and speaks the v20 wire
format of the endpoints the order gateway uses:
- `GET  /v3/accounts/{id}/summary` (the account's `lastTransactionID`);
- `POST /v3/accounts/{id}/orders` (MARKET fills at once at the touch, LIMIT/STOP stay PENDING;
  `stopLossOnFill`/`takeProfitOnFill` create dependent orders on fill; 201 with
  orderCreateTransaction [+ orderFillTransaction | orderCancelTransaction], or 400 with a
  *_ORDER_REJECT transaction, `errorCode` and `errorMessage`);
- `GET  /v3/accounts/{id}/orders/{id | @clientID}`, `PUT .../orders/{spec}/cancel`;
- `GET  /v3/accounts/{id}/transactions/{txid}` and `.../transactions/sinceid?id=`;
- `GET  /v3/accounts/{id}/transactions/stream` on the same port: JSON lines, each new
  transaction and a HEARTBEAT (`lastTransactionID`, `time`) every `heartbeat_s`.

Like the real one it refuses a duplicate `clientExtensions.id` ONLY while an order with that id
is PENDING (CLIENT_ORDER_ID_ALREADY_EXISTS); a filled order's id can be used again, which makes
a second order: `duplicates()` counts them.

Faults, scripted from the test's thread: `hold_next(n)` accept-then-time-out (the order is
placed and filled, the reply is never sent), `late_fill_next(n)` (the reply says PENDING, the
fill transaction follows `late_fill_s` later), `reject_next(reason)`, `abort_streams()` (the
stream breaks mid-body), `heartbeat_s = None` (heartbeats dropped), `fail_next(status)`.
Independent of the gateway's code: its own parsing of the wire.
"""

from __future__ import annotations

import asyncio
import collections
import json
import queue
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.runtime.execution.v20_books import V20Books, rfc3339_now

_POLL_S = 0.005
_INSTRUMENT = re.compile(r"^[A-Z]{3}_[A-Z]{3}$")
_UNITS = re.compile(r"^[+-]?[0-9]+$")
_TIF = {"MARKET": {"FOK", "IOC"}, "LIMIT": {"GTC", "GFD", "GTD", "FOK", "IOC"}}
_TIF["STOP"] = _TIF["LIMIT"]


@dataclass(slots=True)
class _Stream:
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)


class V20Peer(V20Books):
    """A scripted OANDA v20 order peer in a background thread."""

    def __init__(self, *, token: str, account_id: str, first_transaction_id: int = 6000) -> None:
        super().__init__(account_id, first_transaction_id)
        self.token = token
        #: Seconds between HEARTBEATs on every stream; None drops them.
        self.heartbeat_s: float | None = 0.05
        #: How long a late fill follows its reply.
        self.late_fill_s = 0.05
        self.requests: list[tuple[str, str]] = []
        self._hold = 0
        self._blackout_next = False
        self._blackout = False
        #: Held replies whose client gave up (accept-then-time-out done).
        self.timed_out_replies = 0
        self._late = 0
        self._rejects: collections.deque[str] = collections.deque()
        self._failures: collections.deque[int] = collections.deque()
        self._streams: list[_Stream] = []
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._port = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> V20Peer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._server = server

        def run() -> None:
            async def serve() -> None:
                self._loop = asyncio.get_running_loop()
                await server.serve(sockets=[sock])

            asyncio.run(serve())

        self._thread = threading.Thread(target=run, name="v20-peer", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 5.0
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                sock.close()
                raise RuntimeError("the v20 peer did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        self._stopping = True
        with self._lock:
            for stream in self._streams:
                stream.lines.put(None)
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            if self._thread.is_alive():
                raise RuntimeError("the v20 peer did not stop")

    # -- scripting ------------------------------------------------------------------------------

    def hold_next(self, times: int = 1, *, blackout: bool = False) -> None:
        """Accept-then-time-out: place the next `times` orders, never send their replies.

        With `blackout` the transaction streams break as the order is placed and new ones are
        refused (503) until the client gives up on the held reply (a network partition): the
        client cannot learn of the order before its timeout, only from a query afterwards.
        """
        with self._lock:
            self._hold += times
            self._blackout_next = blackout

    def late_fill_next(self, times: int = 1) -> None:
        """The next `times` market orders are answered PENDING and filled `late_fill_s` later."""
        with self._lock:
            self._late += times

    def reject_next(self, reason: str, times: int = 1) -> None:
        """Reject the next `times` orders with `reason` (e.g. INSUFFICIENT_MARGIN)."""
        with self._lock:
            self._rejects.extend([reason] * times)

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next `times` REST requests with `status` (no action taken)."""
        with self._lock:
            self._failures.extend([status] * times)

    def abort_streams(self) -> None:
        """Break every open transaction stream mid-body."""
        with self._lock:
            for stream in self._streams:
                stream.lines.put(None)
            self._streams.clear()

    def open_streams(self) -> int:
        with self._lock:
            return len(self._streams)

    def _publish(self, line: str) -> None:
        for stream in self._streams:
            stream.lines.put(line)

    # -- the app --------------------------------------------------------------------------------

    def _app(self) -> Starlette:
        base = "/v3/accounts/{account_id}"
        return Starlette(
            routes=[
                Route(base + "/summary", self._summary, methods=["GET"]),
                Route(base + "/orders", self._create, methods=["POST"]),
                Route(base + "/orders/{spec}", self._get_order, methods=["GET"]),
                Route(base + "/orders/{spec}/cancel", self._cancel_order, methods=["PUT"]),
                Route(base + "/transactions/sinceid", self._since, methods=["GET"]),
                Route(base + "/transactions/stream", self._stream, methods=["GET"]),
                Route(base + "/transactions/{txid}", self._get_transaction, methods=["GET"]),
            ]
        )

    def _check(self, request: Request) -> Response | None:
        with self._lock:
            self.requests.append((request.method, request.url.path))
            failure = self._failures.popleft() if self._failures else None
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "Insufficient authorization to perform request.", "INSUFFICIENT")
        if request.path_params["account_id"] != self.account_id:
            return _error(400, "Invalid value specified for 'accountID'", "INVALID_ACCOUNT")
        if failure is not None:
            return _error(failure, "Scripted failure", "SCRIPTED")
        return None

    async def _summary(self, request: Request) -> Response:
        answer = self._check(request)
        if answer is not None:
            return answer
        with self._lock:
            last = self._last()
        return JSONResponse(
            {
                "account": {"id": self.account_id, "lastTransactionID": last},
                "lastTransactionID": last,
            }
        )

    async def _create(self, request: Request) -> Response:
        answer = self._check(request)
        if answer is not None:
            return answer
        try:
            body = await request.json()
            spec = body["order"]
            kind = spec["type"]
            instrument = spec["instrument"]
            units = spec["units"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "Invalid or malformed argument: order", "INVALID_ARGUMENT")
        with self._lock:
            if self._hold > 0 and self._blackout_next:
                self._blackout = True
                self.abort_streams()
            reply, hold = self._place(kind, instrument, units, spec)
        if hold:
            while not self._stopping:  # accepted; the reply never comes
                if await request.is_disconnected():
                    with self._lock:
                        self.timed_out_replies += 1
                        self._blackout = False
                    break
                await asyncio.sleep(0.01)
        return reply

    def _place(
        self, kind: str, instrument: str, units: Any, spec: dict[str, Any]
    ) -> tuple[Response, bool]:
        extensions = spec.get("clientExtensions") or {}
        client_id = extensions.get("id")
        tif = spec.get("timeInForce", "FOK" if kind == "MARKET" else "GTC")
        reject_type = f"{kind}_ORDER_REJECT"
        reason = self._rejects.popleft() if self._rejects else None
        if reason is None and kind not in _TIF:
            return _error(
                400, "Invalid value specified for 'order.type'", "INVALID_ARGUMENT"
            ), False
        if reason is None and not _INSTRUMENT.match(str(instrument)):
            reason = "INSTRUMENT_UNKNOWN"
        if reason is None and (
            not isinstance(units, str) or not _UNITS.match(units) or int(units) == 0
        ):
            reason = "UNITS_INVALID"
        if reason is None and tif not in _TIF[kind]:
            reason = "TIME_IN_FORCE_INVALID"
        if reason is None and kind != "MARKET":
            price = spec.get("price")
            decimals = 3 if str(instrument).endswith("JPY") else 5
            if not isinstance(price, str) or len(price.partition(".")[2]) > decimals:
                reason = "PRICE_PRECISION_EXCEEDED"
        if reason is None and client_id and self._pending_by_client(client_id) is not None:
            reason = "CLIENT_ORDER_ID_ALREADY_EXISTS"  # only among PENDING orders, like OANDA
        if reason is None and kind == "MARKET" and instrument not in self.prices:
            reason = "INSTRUMENT_PRICE_UNKNOWN"
        if reason is not None:
            tx = self._transaction(
                reject_type,
                instrument=instrument,
                units=units,
                timeInForce=tif,
                clientExtensions=extensions,
                rejectReason=reason,
            )
            return (
                JSONResponse(
                    {
                        "orderRejectTransaction": tx,
                        "relatedTransactionIDs": [tx["id"]],
                        "lastTransactionID": tx["id"],
                        "errorCode": reason,
                        "errorMessage": f"The order was rejected: {reason}",
                    },
                    status_code=400,
                ),
                False,
            )
        fields = {
            k: v
            for k, v in spec.items()
            if k in ("price", "stopLossOnFill", "takeProfitOnFill", "positionFill")
        }
        created = self._transaction(
            f"{kind}_ORDER",
            instrument=instrument,
            units=units,
            timeInForce=tif,
            reason="CLIENT_ORDER",
            clientExtensions=extensions,
            **fields,
        )
        order: dict[str, Any] = {
            "id": created["id"],
            "createTime": created["time"],
            "type": kind,
            "instrument": instrument,
            "units": units,
            "timeInForce": tif,
            "state": "PENDING",
            "clientExtensions": extensions,
            **fields,
        }
        self.orders[order["id"]] = order
        out: dict[str, Any] = {"orderCreateTransaction": created}
        related = [created["id"]]
        hold = self._hold > 0
        if hold:
            self._hold -= 1
        if kind == "MARKET":
            if self._late > 0:
                self._late -= 1
                assert self._loop is not None
                self._loop.call_later(self.late_fill_s, self._late_fill, order)
            else:
                bid, ask = self.prices[instrument]
                fill = self._fill(order, ask if int(units) > 0 else bid)
                out["orderFillTransaction"] = fill
                related.append(fill["id"])
        out["relatedTransactionIDs"] = related
        out["lastTransactionID"] = self._last()
        return JSONResponse(out, status_code=201), hold

    async def _get_order(self, request: Request) -> Response:
        answer = self._check(request)
        if answer is not None:
            return answer
        with self._lock:
            order = self._find(request.path_params["spec"])
            last = self._last()
            if order is None:
                return _error(404, "The Order specified does not exist", "NO_SUCH_ORDER", last)
            return JSONResponse({"order": dict(order), "lastTransactionID": last})

    async def _cancel_order(self, request: Request) -> Response:
        answer = self._check(request)
        if answer is not None:
            return answer
        spec = request.path_params["spec"]
        with self._lock:
            order = self._find(spec)
            if order is None or order["state"] != "PENDING":
                tx = self._transaction(
                    "ORDER_CANCEL_REJECT",
                    orderID=order["id"] if order else "",
                    rejectReason="ORDER_DOESNT_EXIST" if order is None else "ORDER_NOT_PENDING",
                )
                return JSONResponse(
                    {
                        "orderCancelRejectTransaction": tx,
                        "relatedTransactionIDs": [tx["id"]],
                        "lastTransactionID": tx["id"],
                        "errorCode": tx["rejectReason"],
                        "errorMessage": "The Order cannot be cancelled",
                    },
                    status_code=404,
                )
            tx = self._cancel(order, "CLIENT_REQUEST")
            return JSONResponse(
                {
                    "orderCancelTransaction": tx,
                    "relatedTransactionIDs": [tx["id"]],
                    "lastTransactionID": tx["id"],
                }
            )

    async def _since(self, request: Request) -> Response:
        answer = self._check(request)
        if answer is not None:
            return answer
        text = request.query_params.get("id", "")
        if not text.isdigit():
            return _error(400, "Invalid value specified for 'id'", "INVALID_ARGUMENT")
        since = int(text)
        with self._lock:
            chosen = [t for t in self.transactions if int(t["id"]) > since][:1000]
            return JSONResponse({"transactions": chosen, "lastTransactionID": self._last()})

    async def _get_transaction(self, request: Request) -> Response:
        answer = self._check(request)
        if answer is not None:
            return answer
        txid = request.path_params["txid"]
        with self._lock:
            for tx in self.transactions:
                if tx["id"] == txid:
                    return JSONResponse({"transaction": tx, "lastTransactionID": self._last()})
            return _error(404, "The Transaction specified does not exist", "NO_SUCH_TRANSACTION")

    async def _stream(self, request: Request) -> Response:
        answer = self._check(request)
        if answer is not None:
            return answer
        stream = _Stream()
        with self._lock:
            if self._blackout:
                return _error(503, "Service Unavailable", "SCRIPTED_BLACKOUT")
            self._streams.append(stream)
        return StreamingResponse(self._body(stream), media_type="application/octet-stream")

    async def _body(self, stream: _Stream) -> AsyncIterator[bytes]:
        last_heartbeat = time.monotonic()
        while not self._stopping:
            try:
                line = stream.lines.get_nowait()
            except queue.Empty:
                beat = self.heartbeat_s
                if beat is not None and time.monotonic() - last_heartbeat >= beat:
                    last_heartbeat = time.monotonic()
                    with self._lock:
                        last = self._last()
                    heartbeat = {
                        "type": "HEARTBEAT",
                        "lastTransactionID": last,
                        "time": rfc3339_now(),
                    }
                    yield (json.dumps(heartbeat) + "\n").encode()
                await asyncio.sleep(_POLL_S)
                continue
            if line is None:
                raise ConnectionAbortedError("scripted: the transaction stream breaks")
            yield (line + "\n").encode()


def _error(status: int, message: str, code: str, last: str | None = None) -> Response:
    body: dict[str, Any] = {"errorMessage": message, "errorCode": code}
    if last is not None:
        body["lastTransactionID"] = last
    return JSONResponse(body, status_code=status)
