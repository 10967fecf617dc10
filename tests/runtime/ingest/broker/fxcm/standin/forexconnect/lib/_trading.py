"""The stand-in's trading server: accounts, orders, trades and closed trades (not the SDK).

Follows ForexConnect 1.6's order side as the Python layer exposes it: a request is a value map
of `O2GRequestParamsEnum` values (COMMAND `CreateOrder` / `DeleteOrder`, ORDER_TYPE `OM`
(true market open), `LE` (limit entry), `SE` (stop entry), OFFER_ID, ACCOUNT_ID, BUY_SELL `B`/`S`,
AMOUNT, RATE, RATE_STOP, RATE_LIMIT, TIME_IN_FORCE, CUSTOM_ID, ORDER_ID) with a `request_id`;
`O2GSession.send_request` returns at once and the server answers on the session's SDK thread
through `AO2GResponseListener.on_request_completed(request_id, response)` or
`on_request_failed(request_id, error)`; the tables change through their listeners
(ORDERS add/change/delete, TRADES add/delete, CLOSED_TRADES add). The custom id of a request
is the order row's `request_txt` and the trade rows' `open_order_request_txt`; an executed
order leaves the ORDERS table with status `F`, a cancelled one with `C`, a rejected one `R`.

The books are the remote server's, so they outlive a session and the bridge process: with
`FXCM_STANDIN_BOOKS` set they are kept in that JSON file (written whole, atomically, on every
change) and every new session loads them. Faults (see `_world.py`):
  order_reject              str: every CreateOrder fails with this text (nothing placed)
  order_drop                every CreateOrder is lost on its way to the server: nothing is
                            placed and no answer comes
  order_no_completion       the order is placed (tables change) but no completion ever comes
  order_fill_delay_s        a market order's trade row comes this long after the completion
  order_lose_session        int: every increase loses the session right after the next order
                            is placed, before its completion
  order_fill_hold           a market order placed while set is held by the server (placed,
                            no trade row); once cleared, the server executes it on the next
                            offers update of any session, a later bridge process's too
Entry orders (LE/SE) fill at the offers' prices as the feed crosses their rate; attached stop
and limit rates are kept on the trade and not triggered.
"""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING, Any

from .._world import naive_utc, wall_ms, world

if TYPE_CHECKING:
    from collections.abc import Callable

ORDER_COLUMNS = (
    "order_id",
    "request_id",
    "request_txt",
    "account_id",
    "offer_id",
    "trade_id",
    "type",
    "status",
    "buy_sell",
    "amount",
    "origin_amount",
    "filled_amount",
    "rate",
    "stop",
    "limit",
    "time_in_force",
    "status_time",
)
TRADE_COLUMNS = (
    "trade_id",
    "account_id",
    "offer_id",
    "amount",
    "buy_sell",
    "open_rate",
    "open_time",
    "open_order_id",
    "open_order_req_id",
    "open_order_request_txt",
    "stop",
    "limit",
)
CLOSED_TRADE_COLUMNS = (
    *TRADE_COLUMNS,
    "close_rate",
    "close_time",
    "close_order_id",
    "close_order_req_id",
    "close_order_request_txt",
    "gross_pl",
)
ACCOUNT_COLUMNS = ("account_id", "account_name", "balance")
ACCOUNT_ID = "01234567"
TIME_COLUMNS = ("status_time", "open_time", "close_time")


class Row:
    """A snapshot of one table row: attributes by the SDK's names, `row["Column"]` too."""

    def __init__(self, table_type: Any, values: dict[str, Any]) -> None:
        self.table_type = table_type
        self._values = values
        for name, value in values.items():
            setattr(self, name, naive_utc(value) if name in TIME_COLUMNS and value else value)

    def __getitem__(self, column_id: str) -> Any:
        snake = "".join("_" + c.lower() if c.isupper() else c for c in column_id).lstrip("_")
        return getattr(self, snake)


class Table:
    """A trading table: iterable rows, update and status listeners, rows looked up by column."""

    def __init__(self, table_type: Any, update_types: Any) -> None:
        self.table_type = table_type
        self._rows: dict[str, Row] = {}
        self._lock = threading.Lock()
        self._updates = update_types
        self._listeners: dict[Any, list[Any]] = {kind: [] for kind in update_types}
        self._status_listeners: list[Any] = []

    def __iter__(self) -> Any:
        with self._lock:
            return iter(list(self._rows.values()))

    def __len__(self) -> int:
        return len(self._rows)

    def get_rows_by_column_value(self, column: str, value: Any) -> list[Row]:
        return [row for row in self if getattr(row, column, None) == value]

    def subscribe_update(self, update_type: Any, listener: Any) -> None:
        with self._lock:
            self._listeners[update_type].append(listener)

    def unsubscribe_update(self, update_type: Any, listener: Any) -> None:
        with self._lock:
            if listener in self._listeners[update_type]:
                self._listeners[update_type].remove(listener)

    def subscribe_status(self, listener: Any) -> None:
        self._status_listeners.append(listener)

    def unsubscribe_status(self, listener: Any) -> None:
        if listener in self._status_listeners:
            self._status_listeners.remove(listener)

    def load(self, key: str, values: dict[str, Any]) -> None:
        """A row as the session finds it at login (no listener is told)."""
        self._rows[key] = Row(self.table_type, values)

    def put(self, key: str, values: dict[str, Any]) -> None:
        """Insert or change a row and tell the listeners (the caller's thread is an SDK one)."""
        row = Row(self.table_type, values)
        with self._lock:
            kind = self._updates.UPDATE if key in self._rows else self._updates.INSERT
            self._rows[key] = row
            listeners = list(self._listeners[kind])
        for listener in listeners:
            (listener.on_changed if kind == self._updates.UPDATE else listener.on_added)(key, row)

    def remove(self, key: str, values: dict[str, Any]) -> None:
        row = Row(self.table_type, values)
        with self._lock:
            self._rows.pop(key, None)
            listeners = list(self._listeners[self._updates.DELETE])
        for listener in listeners:
            listener.on_deleted(key, row)


class Books:
    """The server's books, shared by every session of the process and kept in a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.data: dict[str, Any] = {
            "next": 100,
            "orders": {},
            "trades": {},
            "closed_trades": {},
        }
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                self.data = json.load(handle)

    def next_id(self) -> str:
        self.data["next"] += 1
        return str(self.data["next"])

    def save(self) -> None:
        if not self.path:
            return
        temporary = self.path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(self.data, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


_BOOKS: Books | None = None
_BOOKS_LOCK = threading.Lock()


def books() -> Books:
    global _BOOKS  # the server's books: one per process, like the world
    with _BOOKS_LOCK:
        if _BOOKS is None:
            _BOOKS = Books(os.environ.get("FXCM_STANDIN_BOOKS", ""))
        return _BOOKS


class Server:
    """The order side of one session: requests in, responses and table changes out.

    Everything runs on the session's SDK threads (`post` puts a job on its event thread; the
    offers feed matches entry orders on its own thread)."""

    def __init__(
        self,
        tables: dict[Any, Table],
        post: Callable[[Callable[[], None]], None],
        responses: Callable[[], list[Any]],
        lose: Callable[[], None],
        enums: Any,
    ) -> None:
        self._tables = tables
        self._post = post
        self._responses = responses
        self._lose = lose
        self._enums = enums
        self._books = books()
        self._quotes: dict[str, tuple[float, float]] = {}
        self._lost_seen = int(world().fault("order_lose_session", 0))
        with self._books.lock:
            self._load()

    def _load(self) -> None:
        types = self._enums.O2GTableType
        self._tables[types.ACCOUNTS].load(
            ACCOUNT_ID,
            {"account_id": ACCOUNT_ID, "account_name": "standin", "balance": 50000.0},
        )
        for name, kind in (
            ("orders", types.ORDERS),
            ("trades", types.TRADES),
            ("closed_trades", types.CLOSED_TRADES),
        ):
            for key, values in self._books.data[name].items():
                self._tables[kind].load(key, values)

    # -- requests (SDK thread) -----------------------------------------------------------------

    def send(self, request: Any) -> None:
        self._post(lambda: self._execute(request))

    def _execute(self, request: Any) -> None:
        params = request.params
        command = params.get("COMMAND")
        if command == "CreateOrder":
            if world().fault("order_drop", False):
                return  # lost on the wire: the server never saw it
            self._create(request, params)
        elif command == "DeleteOrder":
            self._delete(request, params)
        else:
            self._fail(request.request_id, f"Command {command} is not supported by the stand-in")

    def _create(self, request: Any, params: dict[str, Any]) -> None:
        the_world = world()
        reject = the_world.fault("order_reject", "")
        if reject:
            self._fail(request.request_id, str(reject))
            return
        offer = self._offer(params.get("OFFER_ID"))
        if offer is None:
            self._fail(request.request_id, f"Offer {params.get('OFFER_ID')} is not found")
            return
        if params.get("ACCOUNT_ID") != ACCOUNT_ID:
            self._fail(request.request_id, f"Account {params.get('ACCOUNT_ID')} is not found")
            return
        order_type = params.get("ORDER_TYPE")
        amount = int(params.get("AMOUNT") or 0)
        buy_sell = params.get("BUY_SELL")
        if order_type not in ("OM", "LE", "SE") or amount <= 0 or buy_sell not in ("B", "S"):
            self._fail(request.request_id, "Invalid order parameters")
            return
        if order_type != "OM" and not params.get("RATE"):
            self._fail(request.request_id, "The rate of an entry order is not set")
            return
        with self._books.lock:
            order_id = self._books.next_id()
            order = {
                "order_id": order_id,
                "request_id": request.request_id,
                "request_txt": str(params.get("CUSTOM_ID") or ""),
                "account_id": ACCOUNT_ID,
                "offer_id": offer.offer_id,
                "trade_id": "",
                "type": order_type,
                "status": "W",
                "buy_sell": buy_sell,
                "amount": amount,
                "origin_amount": amount,
                "filled_amount": 0,
                "rate": float(params.get("RATE") or 0.0),
                "stop": float(params.get("RATE_STOP") or 0.0),
                "limit": float(params.get("RATE_LIMIT") or 0.0),
                "time_in_force": str(params.get("TIME_IN_FORCE") or "GTC"),
                "status_time": wall_ms(),
            }
            self._books.data["orders"][order_id] = order
            held = order_type == "OM" and bool(the_world.fault("order_fill_hold", False))
            if held:
                self._books.data.setdefault("held", []).append(order_id)
            self._books.save()
        self._tables[self._enums.O2GTableType.ORDERS].put(order_id, dict(order))
        lost = self._lost_due()
        if lost:
            self._lose()  # the client hears nothing more; the server executes the order still
        elif not the_world.fault("order_no_completion", False):
            self._complete(request.request_id, order_id)
        if order_type == "OM" and not held:
            delay_s = float(the_world.fault("order_fill_delay_s", 0))
            if delay_s > 0:
                timer = threading.Timer(delay_s, self._fill_market, (order_id, offer.instrument))
                timer.name = "standin-sdk-fill"
                timer.daemon = True
                timer.start()
            else:
                self._fill_market(order_id, offer.instrument)

    def _delete(self, request: Any, params: dict[str, Any]) -> None:
        order_id = str(params.get("ORDER_ID") or "")
        with self._books.lock:
            order = self._books.data["orders"].pop(order_id, None)
            if order is not None:
                order["status"] = "C"
                order["status_time"] = wall_ms()
                self._books.save()
        if order is None:
            self._fail(request.request_id, f"Order {order_id} is not found")
            return
        self._complete(request.request_id, order_id)
        self._tables[self._enums.O2GTableType.ORDERS].remove(order_id, order)

    def _complete(self, request_id: str, order_id: str) -> None:
        response = Response(self._enums.O2GResponseType.CREATE_ORDER_RESPONSE, request_id)
        response.order_id = order_id
        for listener in self._responses():
            listener.on_request_completed(request_id, response)

    def _fail(self, request_id: str, error: str) -> None:
        for listener in self._responses():
            listener.on_request_failed(request_id, error)

    def _lost_due(self) -> bool:
        value = int(world().fault("order_lose_session", 0))
        if value <= self._lost_seen:
            return False
        self._lost_seen = value
        return True

    def _offer(self, offer_id: Any) -> Any:
        for row in self._tables[self._enums.O2GTableType.OFFERS]:
            if row.offer_id == offer_id:
                return row
        return None

    # -- fills (SDK threads) -------------------------------------------------------------------

    def on_quote(self, instrument: str, bid: float, ask: float) -> None:
        """An offers update: entry orders its price crosses are filled."""
        self._quotes[instrument] = (bid, ask)
        offer_ids = {row.offer_id: row.instrument for row in self._tables[self._offers_type()]}
        with self._books.lock:
            due = []
            release = not world().fault("order_fill_hold", False)
            held = set(self._books.data.get("held", ()))
            for order in self._books.data["orders"].values():
                if offer_ids.get(order["offer_id"]) != instrument:
                    continue
                if order["type"] == "OM":
                    if release and order["order_id"] in held:
                        due.append(order["order_id"])
                    continue
                price = ask if order["buy_sell"] == "B" else bid
                buy, limit = order["buy_sell"] == "B", order["type"] == "LE"
                crossed = (price <= order["rate"]) if buy == limit else (price >= order["rate"])
                if crossed:
                    due.append(order["order_id"])
        for order_id in due:
            self._fill(order_id, instrument)

    def _offers_type(self) -> Any:
        return self._enums.O2GTableType.OFFERS

    def _fill_market(self, order_id: str, instrument: str) -> None:
        self._fill(order_id, instrument)

    def _fill(self, order_id: str, instrument: str) -> None:
        quote = self._quotes.get(instrument)
        if quote is None:
            offer = next(r for r in self._tables[self._offers_type()] if r.instrument == instrument)
            quote = (offer.bid, offer.ask)
        with self._books.lock:
            order = self._books.data["orders"].pop(order_id, None)
            if order_id in self._books.data.get("held", ()):
                self._books.data["held"].remove(order_id)
            if order is None:
                return  # cancelled meanwhile
            trade_id = self._books.next_id()
            now = wall_ms()
            trade = {
                "trade_id": trade_id,
                "account_id": order["account_id"],
                "offer_id": order["offer_id"],
                "amount": order["amount"],
                "buy_sell": order["buy_sell"],
                "open_rate": quote[1] if order["buy_sell"] == "B" else quote[0],
                "open_time": now,
                "open_order_id": order_id,
                "open_order_req_id": order["request_id"],
                "open_order_request_txt": order["request_txt"],
                "stop": order["stop"],
                "limit": order["limit"],
            }
            self._books.data["trades"][trade_id] = trade
            order.update(status="F", filled_amount=order["amount"], trade_id=trade_id)
            order["status_time"] = now
            self._books.save()
        types = self._enums.O2GTableType
        self._tables[types.ORDERS].put(order_id, dict(order, status="E"))
        self._tables[types.TRADES].put(trade_id, dict(trade))
        self._tables[types.ORDERS].remove(order_id, order)


class Response:
    """An O2GResponse: its type and the request it answers."""

    def __init__(self, response_type: Any, request_id: str) -> None:
        self.type = response_type
        self.request_id = request_id
        self.order_id = ""


class OrderResponseReader:
    def __init__(self, response: Response) -> None:
        self.order_id = response.order_id


class ResponseReaderFactory:
    def create_order_response_reader(self, response: Response) -> OrderResponseReader:
        return OrderResponseReader(response)
