"""The OANDA v20 gateway: orders over REST, evidence from the transaction stream.

    gateway = OandaGateway(config.execution.oanda, secrets.oanda_token, clock)
    await gateway.start()       # account summary (token check), then the transaction stream

Rules:
- Never a second order for one intent. OANDA refuses a duplicate `clientExtensions.id` only
  while the first order is *pending*: a filled market order's id can be used again. So `submit`
  first asks `GET /orders/@{intent_id}` and posts only when OANDA has no such order, and never
  posts one id twice in this process's life (a second submit becomes a query). The core never
  resends either (a submit that failed in transport makes the order UNKNOWN).
- A timeout, a transport error, a 5xx or a 429 raises TransientIOError: the order may or may
  not exist, which only evidence settles (a query, the stream, `transactions/sinceid`). A 4xx
  answer to a create is the broker's word: REJECTED (a duplicate-id reject becomes a query).
- The stream: every line (transaction or HEARTBEAT) proves the connection alive; silence past
  `heartbeat_timeout_s` is a disconnect. After every (re)connect, and whenever a heartbeat's
  `lastTransactionID` is past the last one seen, the gap is read from `transactions/sinceid`.
  Each transaction is turned into evidence once, in id order (`_absorb`).
- The token goes only into each request's Authorization header: never logged, never in repr.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import httpx

from fxconnector.config.execution import OandaExecConfig
from fxconnector.config.secrets import Secret
from fxconnector.core.errors import BadBrokerData, BrokerDisconnected, ConfigError
from fxconnector.execution.messages import GatewayEvent, OrderReport, ReportState, SubmitOrder
from fxconnector.runtime.clock import Clock
from fxconnector.runtime.execution.gateways.oanda_wire import (
    DUPLICATE_CLIENT_ID,
    Json,
    Unsendable,
    create_answer_report,
    events_of,
    last_transaction_id,
    order_report,
    order_request,
    rejected_client_id,
    transaction_id,
)
from fxconnector.runtime.ingest.broker.resilience import Backoff

log = logging.getLogger(__name__)

TOKEN_SETTING: Final = "FXCONNECTOR_OANDA_TOKEN (environment) or oanda_token (secrets file)"  # noqa: S105 (names, not a token)
_ERROR_TEXT: Final = 300


def _answer_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    message = body.get("errorMessage", "") if isinstance(body, Mapping) else ""
    return f"HTTP {response.status_code}: {str(message)[:_ERROR_TEXT]}"


def check_settings(config: OandaExecConfig, token: Secret | None) -> tuple[str, str]:
    """(REST URL, stream URL) of a usable config; ConfigError naming what to fix."""
    if token is None or not token.reveal().strip():
        raise ConfigError(f"the oanda gateway needs an API token: set {TOKEN_SETTING}")
    if not config.account_id:
        raise ConfigError("the oanda gateway needs an account: set execution.oanda.account_id")
    rest, stream = config.urls()
    for name, url in (("rest_url", rest), ("stream_url", stream)):
        if not url.startswith(("https://", "http://")):
            raise ConfigError(f"execution.oanda.{name} {url!r} is not an http(s) URL")
    return rest, stream


class OandaGateway:
    """OANDA v20 orders behind the OrderGateway port."""

    def __init__(
        self,
        config: OandaExecConfig,
        token: Secret | None,
        clock: Clock,
        *,
        http: httpx.AsyncClient | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._rest, self._stream_url = check_settings(config, token)
        assert token is not None  # checked above
        self._config = config
        self._account = config.account_id
        self._token = token
        self._clock = clock
        self._http = http
        self._own_http = http is None
        self._backoff = backoff or Backoff(base_s=0.2, cap_s=config.reconnect_cap_s)
        self._queue: asyncio.Queue[GatewayEvent | None] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._posted: set[str] = set()
        self._rejects: dict[str, str] = {}
        self._last_id = 0
        self._task: asyncio.Task[None] | None = None
        self._open = False
        #: Stream connections after the first.
        self.reconnects = 0
        #: HEARTBEAT lines received.
        self.heartbeats = 0
        #: Transactions read from `transactions/sinceid` (gaps the stream missed).
        self.caught_up = 0
        #: Unreadable stream lines or transactions (skipped).
        self.parse_errors = 0

    def __repr__(self) -> str:
        return f"OandaGateway(account_id={self._account!r}, rest={self._rest!r})"

    @property
    def name(self) -> str:
        return "oanda"

    @property
    def last_transaction_id(self) -> int:
        return self._last_id

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the token and account (`GET /summary`: a 401/403 is a ConfigError), remember
        the account's last transaction, start the transaction stream."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._timeout())
        response = await self._call("GET", f"/v3/accounts/{self._account}/summary")
        if response.status_code in (401, 403):
            raise ConfigError(
                f"OANDA refused the token ({_answer_error(response)}): check "
                f"{TOKEN_SETTING} and execution.oanda.account_id"
            )
        if response.status_code != 200:
            raise BrokerDisconnected(f"OANDA account summary: {_answer_error(response)}")
        last = last_transaction_id(self._json(response))
        if last is None:
            raise BadBrokerData("OANDA account summary without lastTransactionID")
        self._last_id = last
        self._open = True
        self._task = asyncio.create_task(self._stream_forever(), name="oanda-transactions")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._open:
            self._open = False
            self._queue.put_nowait(None)

    async def events(self) -> AsyncIterator[GatewayEvent]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    # --- orders --------------------------------------------------------------------------------

    async def submit(self, order: SubmitOrder) -> OrderReport:
        try:
            return await self._submit(order)
        except BadBrokerData as exc:  # the order may exist: a doubt, settled by a query
            raise BrokerDisconnected(f"unreadable OANDA answer: {exc}") from exc

    async def _submit(self, order: SubmitOrder) -> OrderReport:
        intent_id = order.intent.intent_id
        if intent_id in self._posted:
            return await self._query(intent_id)  # never a second post of one id
        existing = await self._order(intent_id)
        if existing is not None:
            log.warning("oanda: %s is already at OANDA: not placed again", intent_id)
            return existing
        try:
            body = order_request(order.intent)
        except Unsendable as exc:
            return self._report(intent_id, ReportState.REJECTED, f"not sent: {exc}")
        self._posted.add(intent_id)
        response = await self._call("POST", f"/v3/accounts/{self._account}/orders", body)
        now_ms = self._clock.now_ms()
        if response.status_code in (200, 201):
            return create_answer_report(intent_id, self._json(response), now_ms)
        self._raise_if_transient(response)
        answer = self._json_or_empty(response)
        reject = answer.get("orderRejectTransaction")
        if isinstance(reject, Mapping) and reject.get("rejectReason") == DUPLICATE_CLIENT_ID:
            return await self._query(intent_id)  # a pending order has this id: it is ours
        reason = reject.get("rejectReason") if isinstance(reject, Mapping) else None
        text = f"{reason}: {_answer_error(response)}" if reason else _answer_error(response)
        if response.status_code in (401, 403):
            log.error("oanda: the order was refused for authorization: check %s", TOKEN_SETTING)
        return self._report(intent_id, ReportState.REJECTED, text)

    async def cancel(self, intent_id: str) -> None:
        path = f"/v3/accounts/{self._account}/orders/@{intent_id}/cancel"
        response = await self._call("PUT", path)
        self._raise_if_transient(response)
        if response.status_code == 200:
            cancelled = self._json_or_empty(response).get("orderCancelTransaction")
            if isinstance(cancelled, Mapping):
                # Evidence now; the stream brings the same transaction again (a no-op then).
                for event in events_of(cancelled, self._clock.now_ms()):
                    self._queue.put_nowait(event)
        # A 404 (not pending: filled or gone) is no evidence by itself; the core queries.

    async def query(self, intent_id: str) -> OrderReport:
        """OANDA's order by client id; when it has none, the transactions since the last one
        seen are read first: a reject of that id is REJECTED evidence, else NOT_FOUND."""
        try:
            return await self._query(intent_id)
        except BadBrokerData as exc:
            raise BrokerDisconnected(f"unreadable OANDA answer: {exc}") from exc

    async def _query(self, intent_id: str) -> OrderReport:
        found = await self._order(intent_id)
        if found is not None:
            return found
        await self._catch_up()
        reason = self._rejects.get(intent_id)
        if reason is not None:
            return self._report(intent_id, ReportState.REJECTED, reason)
        return self._report(intent_id, ReportState.NOT_FOUND, "")

    async def _order(self, intent_id: str) -> OrderReport | None:
        response = await self._call("GET", f"/v3/accounts/{self._account}/orders/@{intent_id}")
        if response.status_code == 404:
            return None
        self._raise_if_transient(response)
        if response.status_code != 200:
            raise BrokerDisconnected(f"OANDA order query: {_answer_error(response)}")
        order = self._json(response).get("order")
        if not isinstance(order, Mapping):
            raise BadBrokerData("OANDA order answer without `order`")
        related = [
            await self._transaction(str(order[key]))
            for key in ("fillingTransactionID", "cancellingTransactionID")
            if isinstance(order.get(key), str)
        ]
        return order_report(intent_id, order, related, self._clock.now_ms())

    async def _transaction(self, tx_id: str) -> Json:
        response = await self._call("GET", f"/v3/accounts/{self._account}/transactions/{tx_id}")
        self._raise_if_transient(response)
        if response.status_code != 200:
            raise BrokerDisconnected(f"OANDA transaction {tx_id}: {_answer_error(response)}")
        transaction = self._json(response).get("transaction")
        if not isinstance(transaction, Mapping):
            raise BadBrokerData("OANDA transaction answer without `transaction`")
        return transaction

    def _report(self, intent_id: str, state: ReportState, reason: str) -> OrderReport:
        return OrderReport(
            intent_id=intent_id, ts=self._clock.now_ms(), state=state, reason=reason[:512]
        )

    # --- transactions --------------------------------------------------------------------------

    def _absorb(self, transaction: Json) -> None:
        """One transaction into evidence, once, in id order (call with the lock held)."""
        try:
            tx_id = transaction_id(transaction)
            if tx_id <= self._last_id:
                return
            events = events_of(transaction, self._clock.now_ms())
        except BadBrokerData as exc:
            self.parse_errors += 1
            log.warning("oanda: unreadable transaction skipped: %s", exc)
            return
        self._last_id = max(self._last_id, tx_id)
        rejected = rejected_client_id(transaction)
        if rejected is not None:
            self._rejects[rejected[0]] = rejected[1]
        for event in events:
            self._queue.put_nowait(event)

    async def _catch_up(self) -> None:
        """Read every transaction after the last one seen (`transactions/sinceid`)."""
        async with self._lock:
            path = f"/v3/accounts/{self._account}/transactions/sinceid"
            response = await self._call("GET", path, params={"id": str(self._last_id)})
            self._raise_if_transient(response)
            if response.status_code != 200:
                raise BrokerDisconnected(f"OANDA transactions/sinceid: {_answer_error(response)}")
            transactions = self._json(response).get("transactions")
            if not isinstance(transactions, list):
                raise BadBrokerData("OANDA sinceid answer without `transactions`")
            for transaction in sorted(
                (t for t in transactions if isinstance(t, Mapping)), key=_sort_key
            ):
                self.caught_up += 1
                self._absorb(transaction)

    async def _stream_forever(self) -> None:
        first = True
        while True:
            if not first:
                self.reconnects += 1
                delay_s = self._backoff.next_delay()
                await self._clock.sleep_until(self._clock.now_ms() + int(delay_s * 1000))
            first = False
            try:
                await self._stream_once()
            except (httpx.HTTPError, BrokerDisconnected, TimeoutError) as exc:
                log.warning("oanda: transaction stream lost (%s); reconnecting", type(exc).__name__)
            except (ConfigError, BadBrokerData) as exc:
                log.error("oanda: transaction stream: %s", exc)

    async def _stream_once(self) -> None:
        assert self._http is not None
        url = f"{self._stream_url}/v3/accounts/{self._account}/transactions/stream"
        timeout = httpx.Timeout(
            self._config.request_timeout_s, read=self._config.heartbeat_timeout_s
        )
        async with self._http.stream(
            "GET", url, headers=self._headers(), timeout=timeout
        ) as response:
            if response.status_code in (401, 403):
                raise ConfigError(f"{_answer_error(response)}: check {TOKEN_SETTING}")
            if response.status_code != 200:
                raise BrokerDisconnected(f"transaction stream: HTTP {response.status_code}")
            await self._catch_up()  # what happened while we were not listening
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                self._backoff.healthy(self._clock.now_ms() / 1000)
                try:
                    item = json.loads(line)
                except ValueError:
                    self.parse_errors += 1
                    continue
                if not isinstance(item, Mapping):
                    self.parse_errors += 1
                    continue
                if item.get("type") == "HEARTBEAT":
                    self.heartbeats += 1
                    last = last_transaction_id(item)
                    if last is not None and last > self._last_id:
                        await self._catch_up()
                    continue
                async with self._lock:
                    self._absorb(item)
        raise BrokerDisconnected("the transaction stream ended")

    # --- HTTP ----------------------------------------------------------------------------------

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self._config.request_timeout_s)

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token.reveal()}",
            "Accept-Datetime-Format": "RFC3339",
        }

    async def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One REST request; a timeout or transport error is BrokerDisconnected (transient)."""
        if self._http is None:
            raise BrokerDisconnected("the oanda gateway is not started")
        try:
            return await self._http.request(
                method,
                self._rest + path,
                json=body,
                params=params,
                headers=self._headers(),
                timeout=self._timeout(),
            )
        except httpx.TimeoutException as exc:
            raise BrokerDisconnected(f"OANDA {method} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise BrokerDisconnected(f"OANDA {method} failed ({type(exc).__name__})") from exc

    @staticmethod
    def _raise_if_transient(response: httpx.Response) -> None:
        if response.status_code == 429 or response.status_code >= 500:
            raise BrokerDisconnected(f"OANDA answered {_answer_error(response)}")

    @staticmethod
    def _json(response: httpx.Response) -> Json:
        try:
            body = response.json()
        except ValueError as exc:
            raise BadBrokerData(f"OANDA answer is not JSON (HTTP {response.status_code})") from exc
        if not isinstance(body, Mapping):
            raise BadBrokerData("OANDA answer is not a JSON object")
        return body

    @classmethod
    def _json_or_empty(cls, response: httpx.Response) -> Json:
        try:
            return cls._json(response)
        except BadBrokerData:
            return {}


def _sort_key(transaction: Json) -> int:
    try:
        return transaction_id(transaction)
    except BadBrokerData:
        return 0
