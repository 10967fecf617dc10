"""The embedded Redis: a private redis-server on an owner-only unix socket, and nothing left
behind when it stops or after a crash."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
from pathlib import Path

import pytest

from fxconnector.config.secrets import Secrets
from fxconnector.core.errors import SurfaceUnavailable
from fxconnector.runtime.publish.embedded import EmbeddedRedis
from fxconnector.runtime.publish.redis_connect import connect_redis

pytestmark = pytest.mark.redis


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def ping_and_port(url: str) -> tuple[bool, str | None]:
    client = connect_redis(url, Secrets())
    try:
        pong = await asyncio.wait_for(client.ping(), 5)
        config = await asyncio.wait_for(client.config_get("port"), 5)
        return bool(pong), config.get("port")
    finally:
        await client.aclose()


def test_it_serves_on_an_owner_only_socket_and_stops_without_a_trace(tmp_path: Path) -> None:
    embedded = EmbeddedRedis(tmp_path / "redis")
    embedded.start()
    try:
        pid = embedded.pid
        assert pid is not None
        assert embedded.url == f"unix://{tmp_path / 'redis' / 'redis.sock'}"
        mode = embedded.socket_path.stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o700
        assert asyncio.run(ping_and_port(embedded.url)) == (True, "0")  # no TCP listener
    finally:
        embedded.stop()
    assert not alive(pid)
    assert not embedded.socket_path.exists()
    assert embedded.log_path.is_file()
    assert not [p for p in embedded.folder.iterdir() if p.suffix in {".rdb", ".aof"}]
    embedded.stop()  # idempotent


def test_a_stale_socket_from_a_crash_is_removed_on_start(tmp_path: Path) -> None:
    crashed = EmbeddedRedis(tmp_path / "redis")
    crashed.start()
    try:
        pid = crashed.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # a crash: the socket file stays behind
        os.waitpid(pid, 0)
        assert crashed.socket_path.exists()

        with EmbeddedRedis(tmp_path / "redis") as again:
            assert asyncio.run(ping_and_port(again.url))[0]
        assert not again.socket_path.exists()
    finally:
        crashed.stop()  # forgets the dead process; raises nothing


def test_a_second_server_on_a_live_socket_is_refused(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as first:
        with pytest.raises(SurfaceUnavailable, match="already answers"):
            EmbeddedRedis(tmp_path / "redis").start()
        assert asyncio.run(ping_and_port(first.url))[0]


def test_a_server_that_cannot_start_shows_its_own_last_lines(tmp_path: Path) -> None:
    folder = tmp_path / "redis"
    (folder / "redis.sock" / "in-the-way").mkdir(parents=True)  # redis-server cannot listen
    embedded = EmbeddedRedis(folder, start_timeout_s=5)
    with pytest.raises(SurfaceUnavailable) as info:
        embedded.start()
    message = str(info.value)
    assert message.startswith("embedded redis exited with code 1 on start; its last lines:")
    # The server's own words, taken from its output (not a pointer to a file).
    assert "Opening Unix socket: bind: Address already in use" in message
    assert embedded.pid is None


def test_a_relative_folder_is_made_absolute_before_the_server_changes_into_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    embedded = EmbeddedRedis(Path("var") / "redis")  # `make run`'s relative workdir
    assert embedded.folder == tmp_path / "var" / "redis"
    with embedded:
        assert asyncio.run(ping_and_port(embedded.url))[0]
    log = (tmp_path / "var" / "redis" / "redis.log").read_text()
    assert f"ready to accept connections at {tmp_path / 'var' / 'redis' / 'redis.sock'}" in log


def test_an_output_file_that_cannot_be_opened_is_one_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "redis"
    (folder / "redis.log").mkdir(parents=True)
    embedded = EmbeddedRedis(folder, start_timeout_s=5)
    with pytest.raises(SurfaceUnavailable, match=r"cannot open .*redis\.log for its output"):
        embedded.start()
    assert embedded.pid is None
    assert not embedded.socket_path.exists()


def test_the_server_is_out_of_reach_of_a_terminal_ctrl_c(tmp_path: Path) -> None:
    # A Ctrl-C signals the terminal's foreground process group: the server must not be in it,
    # or it dies before the streams that read from it are closed.
    with EmbeddedRedis(tmp_path / "redis") as embedded:
        assert embedded.pid is not None
        assert os.getpgid(embedded.pid) == embedded.pid
        assert os.getpgid(embedded.pid) != os.getpgrp()
