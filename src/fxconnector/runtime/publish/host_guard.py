"""Who may call the API: the Host check (DNS rebinding) and the WebSocket Origin check.

Rules:
- Host: a request whose `Host` header names neither the bind address, nor a loopback name
  (`localhost`, `*.localhost`, 127.0.0.0/8, ::1), nor a name of `http.allowed_hosts` is refused
  with 400 `host_not_allowed` before routing (a DNS-rebinding page reaches the server under the
  attacker's host name). When the bind address is a wildcard (0.0.0.0, ::) any IP literal is
  accepted too (a rebinding attack needs a name). `"*"` in `allowed_hosts` turns the check off.
  A request without a Host header (HTTP/1.0 tools) passes. Behind a proxy (deploy/nginx
  forwards `Host $host`), list the public name in `allowed_hosts`.
- Origin: a WebSocket handshake whose `Origin` is present and neither has the request's own
  host name (same origin, port ignored: a proxy's `$host` drops it) nor is listed in
  `http.allowed_origins` (exact `scheme://host[:port]`, or `"*"`) is refused before it is
  accepted (HTTP 403 from the server). Browsers always send Origin on a WebSocket; other
  clients usually do not, and pass. EventSource and fetch are covered by the browser's
  same-origin policy (no CORS headers are ever sent).
- Names compare case-insensitively. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from fxconnector.core.utils.json_codec import encode

_WILDCARDS: Final = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names, not a bind
_POLICY_VIOLATION: Final = 1008
_HOST_CACHE_MAX: Final = 1024


def hostname(host: str) -> str:
    """The name of a `Host` value (`name[:port]`, `[v6]:port`), lowercased, without port."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """The names the server answers to and the origins its WebSocket accepts."""

    bind_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()

    def host_ok(self, host: str) -> bool:
        name = hostname(host)
        if "*" in self.allowed_hosts or name == "localhost" or name.endswith(".localhost"):
            return True
        if name == hostname(self.bind_host) or name in {h.lower() for h in self.allowed_hosts}:
            return True
        address = _ip(name)
        if address is None:
            return False
        return address.is_loopback or hostname(self.bind_host) in _WILDCARDS

    def origin_ok(self, origin: str, host: str | None) -> bool:
        origin = origin.strip().lower().rstrip("/")
        if "*" in self.allowed_origins or origin in {o.lower() for o in self.allowed_origins}:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            return False  # e.g. "null" (a sandboxed page, a file)
        return host is not None and parts.hostname == hostname(host)


class HostGuard:
    """ASGI middleware applying a HostPolicy (module rules)."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self._app = app
        self._policy = policy
        # Decisions per Host value: a request costs a dict lookup, not a parse.
        self._hosts: dict[str, bool] = {}

    def _host_ok(self, host: str) -> bool:
        known = self._hosts.get(host)
        if known is None:
            if len(self._hosts) >= _HOST_CACHE_MAX:
                self._hosts.clear()
            known = self._hosts[host] = self._policy.host_ok(host)
        return known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self._app(scope, receive, send)
            return
        headers = {k: v for k, v in scope["headers"] if k in {b"host", b"origin"}}
        host = headers[b"host"].decode("latin-1") if b"host" in headers else None
        origin = headers[b"origin"].decode("latin-1") if b"origin" in headers else None
        if host is not None and not self._host_ok(host):
            await self._refuse(scope, send, 400, "host_not_allowed", f"host {host[:60]!r}")
            return
        if (
            scope["type"] == "websocket"
            and origin is not None
            and not self._policy.origin_ok(origin, host)
        ):
            await self._refuse(scope, send, 403, "origin_not_allowed", f"origin {origin[:60]!r}")
            return
        await self._app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send, status: int, code: str, what: str) -> None:
        message = f"{what} is not allowed (see http.allowed_hosts / http.allowed_origins)"
        if scope["type"] == "websocket":
            # Before accept: the server answers the handshake with HTTP 403.
            await send({"type": "websocket.close", "code": _POLICY_VIOLATION, "reason": code})
            return
        body = encode({"error": {"code": code, "message": message}})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
