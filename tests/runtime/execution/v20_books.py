"""The books of the local v20 order peer: an account's orders and transactions, v20-shaped.

Orders and transactions are the JSON objects OANDA returns (`id`, `time`, `type`, ...), with
transaction ids increasing by one. Fills open a trade (its id is the order's) and create the
dependent stop loss / take profit orders of `stopLossOnFill` / `takeProfitOnFill`; a fill of one
of those closes the trade and cancels the other (LINKED_TRADE_CLOSED). The HTTP side and the
faults are `v20_peer.V20Peer`; every method here runs with `_lock` held by its caller (or takes
it: the public ones).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import threading
from typing import Any


def rfc3339_now() -> str:
    now = dt.datetime.now(tz=dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


class V20Books:
    """One v20 account's orders and transactions."""

    def __init__(self, account_id: str, first_transaction_id: int) -> None:
        self.account_id = account_id
        self.prices: dict[str, tuple[float, float]] = {}
        self.transactions: list[dict[str, Any]] = []
        self.orders: dict[str, dict[str, Any]] = {}
        self._next_id = first_transaction_id
        self._lock = threading.RLock()

    def _publish(self, line: str) -> None:
        """A new transaction's JSON line (the peer writes it to its open streams)."""

    def fill_pending(self, client_id: str) -> None:
        """Fill the PENDING order with this client id (a limit or stop order trading, or the
        stop loss / take profit of a trade) at its own price."""
        with self._lock:
            order = self._pending_by_client(client_id)
            if order is None:
                raise KeyError(f"no pending order {client_id}")
            self._fill(order, float(order["price"]))

    # -- reading --------------------------------------------------------------------------------

    def orders_of(self, client_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                o
                for o in self.orders.values()
                if o.get("clientExtensions", {}).get("id") == client_id
            ]

    def duplicates(self) -> dict[str, int]:
        """Client ids with more than one order."""
        with self._lock:
            counts = collections.Counter(
                o["clientExtensions"]["id"] for o in self.orders.values() if "clientExtensions" in o
            )
        return {k: v for k, v in counts.items() if v > 1}

    def last_id(self) -> int:
        with self._lock:
            return self._next_id - 1

    # -- books ----------------------------------------------------------------------------------

    def _transaction(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append one transaction (lock held) and push it to every open stream."""
        tx = {
            "id": str(self._next_id),
            "time": rfc3339_now(),
            "userID": 1,
            "accountID": self.account_id,
            "batchID": str(self._next_id),
            "type": kind,
            **fields,
        }
        self._next_id += 1
        self.transactions.append(tx)
        self._publish(json.dumps(tx))
        return tx

    def _pending_by_client(self, client_id: str) -> dict[str, Any] | None:
        for order in self.orders.values():
            if order["state"] == "PENDING" and order.get("clientExtensions", {}).get("id") == (
                client_id
            ):
                return order
        return None

    def _find(self, spec: str) -> dict[str, Any] | None:
        if spec.startswith("@"):
            found = self.orders_of(spec[1:])
            return found[-1] if found else None
        return self.orders.get(spec)

    def _fill(self, order: dict[str, Any], price: float) -> dict[str, Any]:
        units = order["units"]
        client = order.get("clientExtensions", {}).get("id")
        fields: dict[str, Any] = {
            "orderID": order["id"],
            "instrument": order["instrument"],
            "units": units,
            "price": f"{price:.5f}",
            "fullVWAP": f"{price:.5f}",
            "reason": order["type"] + "_ORDER"
            if order["type"] in ("MARKET", "LIMIT")
            else order["type"],
            "pl": "0.0000",
        }
        if client:
            fields["clientOrderID"] = client
        trade_id = order.get("tradeID")
        if trade_id is None:
            fields["tradeOpened"] = {
                "tradeID": order["id"],
                "units": units,
                "price": fields["price"],
            }
        else:
            fields["tradesClosed"] = [{"tradeID": trade_id, "units": units}]
        fill = self._transaction("ORDER_FILL", **fields)
        order.update(state="FILLED", fillingTransactionID=fill["id"], filledTime=fill["time"])
        if trade_id is None:
            order["tradeOpenedID"] = order["id"]
            for key, kind, suffix in (
                ("stopLossOnFill", "STOP_LOSS", "sl"),
                ("takeProfitOnFill", "TAKE_PROFIT", "tp"),
            ):
                details = order.get(key)
                if details:
                    self._dependent(order, kind, details, suffix)
        else:
            # The trade closed: its other dependent order is cancelled.
            for other in self.orders.values():
                if other.get("tradeID") == trade_id and other["state"] == "PENDING":
                    self._cancel(other, "LINKED_TRADE_CLOSED")
        return fill

    def _dependent(
        self, parent: dict[str, Any], kind: str, details: dict[str, Any], suffix: str
    ) -> None:
        extensions = details.get("clientExtensions") or {}
        tx = self._transaction(
            f"{kind}_ORDER",
            tradeID=parent["id"],
            price=details["price"],
            timeInForce=details.get("timeInForce", "GTC"),
            reason="ON_FILL",
            clientExtensions=extensions,
        )
        units = str(-int(parent["units"]))
        self.orders[tx["id"]] = {
            "id": tx["id"],
            "createTime": tx["time"],
            "type": kind,
            "instrument": parent["instrument"],
            "units": units,
            "price": details["price"],
            "timeInForce": "GTC",
            "state": "PENDING",
            "tradeID": parent["id"],
            "clientExtensions": extensions,
        }
        del suffix

    def _cancel(self, order: dict[str, Any], reason: str) -> dict[str, Any]:
        fields: dict[str, Any] = {"orderID": order["id"], "reason": reason}
        client = order.get("clientExtensions", {}).get("id")
        if client:
            fields["clientOrderID"] = client
        tx = self._transaction("ORDER_CANCEL", **fields)
        order.update(state="CANCELLED", cancellingTransactionID=tx["id"], cancelledTime=tx["time"])
        return tx

    def _last(self) -> str:
        return str(self._next_id - 1)

    def _late_fill(self, order: dict[str, Any]) -> None:
        with self._lock:
            if order["state"] == "PENDING":
                bid, ask = self.prices[order["instrument"]]
                self._fill(order, ask if int(order["units"]) > 0 else bid)
