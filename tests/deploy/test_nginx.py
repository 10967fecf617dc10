"""deploy/nginx/fxconnector.conf in a real nginx, in front of a real connector.

The test renders the site as shipped, changing only its two addresses (the upstream's port and
`listen`, each asserted to occur once), wraps it in a minimal nginx.conf of its own (pid, logs
and temp files in tmp_path, one process), checks it with `nginx -t` and starts nginx on a free
port before `fxconnector run --profile demo`. Through nginx: /api/bars answers as the connector
does, /api/stream delivers an SSE event, /ws delivers a WebSocket message. Without nginx
(Debian's `nginx`, installed by `make test` when it can) the test skips and says why.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from fxconnector.runtime.publish.surface_reader import parse_stream_id
from tests.app.connector import Connector
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "deploy" / "nginx" / "fxconnector.conf"
UPSTREAM = "server 127.0.0.1:8088;"
LISTEN = "listen 80;"
WAIT_S = 30.0


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None
    )
    if found is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx; `make test` tries)")
    return found


def render(site: str, upstream_port: int, listen_port: int) -> str:
    assert site.count(UPSTREAM) == 1
    assert site.count(LISTEN) == 1
    return site.replace(UPSTREAM, f"server 127.0.0.1:{upstream_port};").replace(
        LISTEN, f"listen 127.0.0.1:{listen_port};"
    )


def nginx_conf(prefix: Path, site: Path) -> str:
    temp = {name: prefix / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    return f"""
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {site};
}}
"""


def location(site: str, path: str) -> str:
    """The body of `location = path { ... }` (blocks inside it have no braces)."""
    match = re.search(r"location = " + re.escape(path) + r" \{(?P<body>[^}]*)\}", site)
    assert match is not None, path
    return match["body"]


def test_stream_and_websocket_locations_do_not_buffer_and_wait_long() -> None:
    site = SITE.read_text()
    stream = location(site, "/api/stream")
    assert "proxy_buffering off;" in stream
    assert "proxy_read_timeout 24h;" in stream
    ws = location(site, "/ws")
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $fxconnector_connection;" in ws
    assert "proxy_read_timeout 24h;" in ws
    # nginx drops inherited proxy_set_header lines where a location sets its own: each
    # location forwards the client's Host itself (the connector checks it).
    for path in ("/api/stream", "/ws"):
        assert "proxy_set_header Host $host;" in location(site, path), path
    assert site.count("proxy_set_header Host $host;") == len(
        re.findall(r"^ *location ", site, re.M)
    )


class Nginx:
    """nginx in the foreground, one process, on `port`."""

    def __init__(self, binary: str, prefix: Path, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.conf = prefix / "nginx.conf"
        self.prefix = prefix
        checked = subprocess.run(
            [
                binary,
                "-t",
                "-p",
                str(prefix),
                "-e",
                str(prefix / "error.log"),
                "-c",
                str(self.conf),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr
        self.proc = subprocess.Popen(
            [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + WAIT_S
        with httpx.Client(timeout=2.0) as http:
            while True:
                assert self.proc.poll() is None, self.errors()
                try:
                    http.get(f"{self.base}/nginx-is-up")
                    return
                except httpx.TransportError:
                    assert time.monotonic() < deadline, self.errors()
                    time.sleep(0.1)

    def errors(self) -> str:
        log = self.prefix / "error.log"
        return log.read_text()[-4000:] if log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Connector, Nginx]]:
    binary = nginx_binary()
    connector = Connector(tmp_path / "var", "--profile", "demo")
    nginx: Nginx | None = None
    try:
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        site = prefix / "fxconnector.conf"
        port = free_port()
        site.write_text(render(SITE.read_text(), connector.port, port))
        (prefix / "nginx.conf").write_text(nginx_conf(prefix, site))
        nginx = Nginx(binary, prefix, port)
        connector.wait_ready()
        yield connector, nginx
    finally:
        if nginx is not None:
            nginx.stop()
        connector.cleanup()


@pytest.mark.slow
def test_bars_sse_and_websocket_pass_through_nginx(proxied: tuple[Connector, Nginx]) -> None:
    connector, nginx = proxied
    query: dict[str, str | int] = {"symbol": "EURUSD", "tf": "1m", "limit": 20}
    with httpx.Client(timeout=10.0) as http:
        direct = http.get(f"{connector.base}/api/bars", params=query)
        through = http.get(f"{nginx.base}/api/bars", params=query)
        assert through.status_code == 200, through.text
        bars = through.json()["bars"]
        assert len(bars) == 20
        assert all(b["complete"] and b["symbol"] == "EURUSD" for b in bars)
        # The same finals as the connector answers itself (a later cursor at most).
        assert bars[:-1] == direct.json()["bars"][-19:] or bars == direct.json()["bars"]
        cursor = through.json()["cursor"]
        assert http.get(f"{nginx.base}/api/health/ready").status_code == 200
        # nginx forwards the client's Host: a name the connector does not answer to (DNS
        # rebinding) is refused behind nginx too.
        foreign = http.get(f"{nginx.base}/api/symbols", headers={"host": "evil.example"})
        assert foreign.status_code == 400
        assert foreign.json()["error"]["code"] == "host_not_allowed"
        assert "<html" in http.get(f"{nginx.base}/").text.lower()  # the chart page

        # SSE: a live event after the bars' cursor, streamed through (not buffered to the end).
        stream_query = {"cursor": cursor, "symbols": "EURUSD"}
        timeout = httpx.Timeout(WAIT_S)
        with http.stream(
            "GET", f"{nginx.base}/api/stream", params=stream_query, timeout=timeout
        ) as sse:
            assert sse.status_code == 200
            assert sse.headers["content-type"].startswith("text/event-stream")
            event = _first_sse_event(sse.iter_lines())
        assert event["event"] == "bar"
        payload = json.loads(event["data"])
        assert payload["symbol"] == "EURUSD"
        assert parse_stream_id(event["id"]) > parse_stream_id(cursor)

    # WebSocket: the Upgrade passes through; the first frame of the stream from its start.
    ws_url = f"ws://127.0.0.1:{nginx.port}/ws?cursor=0-0&symbols=GBPUSD&tfs=1m"
    with connect(ws_url, open_timeout=WAIT_S) as ws:
        frame = json.loads(ws.recv(timeout=WAIT_S))
    assert set(frame) == {"id", "event"}, frame
    assert frame["event"]["symbol"] == "GBPUSD"
    assert frame["event"]["tf"] == "1m"
    access = (nginx.prefix / "access.log").read_text()
    assert re.search(r'"GET /api/stream\?cursor=[0-9-]+&symbols=EURUSD HTTP/1.1" 200', access)
    assert '"GET /ws?cursor=0-0&symbols=GBPUSD&tfs=1m HTTP/1.1" 101' in access


def _first_sse_event(lines: Iterator[str]) -> dict[str, str]:
    """The first SSE event with data (comments and the error events' lack of id skipped)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            continue
        if not line:
            if "data" in fields and "id" in fields:
                return fields
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
    raise AssertionError("the SSE stream ended without an event")
