"""The README's two client examples, run as written against a real connector (sim broker).

Only the server's address and the workdir's socket path are replaced; a change to the README
that breaks an example breaks this test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.connector import Connector

README = Path(__file__).resolve().parents[2] / "README.md"
CONFIG = (
    '[calendar]\nprofile = "always_open"\n'
    '[broker]\nkind = "sim"\nsymbols = ["EURUSD"]\nstartup_lookback_mins = 30\n'
    "[broker.sim]\nticks_per_minute = 600\n"
)


def examples() -> dict[str, str]:
    """The python blocks of the README's "Python client" section, by the client they use."""
    text = README.read_text()
    section = text[text.index("## Python client") : text.index("## Data out and in")]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    found = {"http" if "HttpClient" in block else "redis": block for block in blocks}
    assert sorted(found) == ["http", "redis"]
    return found


def test_each_example_is_about_ten_lines() -> None:
    for name, block in examples().items():
        code = [line for line in block.splitlines() if line.strip()]
        assert len(code) <= 16, (name, len(code))


@pytest.fixture(scope="module")
def connector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connector]:
    root = tmp_path_factory.mktemp("readme")
    config = root / "config.toml"
    config.write_text(CONFIG)
    running = Connector(root / "var", "--config", str(config))
    try:
        running.wait_ready()
        yield running
    finally:
        running.cleanup()


def run_example(block: str, connector: Connector) -> str:
    code = block.replace("http://127.0.0.1:8088", connector.base).replace(
        "var/redis/redis.sock", str(connector.workdir / "redis" / "redis.sock")
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # A new user reads no traceback: breaking out of a stream closes it cleanly (an unclosed
    # stream printed "an error occurred during closing of asynchronous generator").
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "Error" not in done.stderr, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_http_example_runs(connector: Connector) -> None:
    out = run_example(examples()["http"], connector)
    assert "symbol" in out  # the pandas frame's header
    assert "+00:00" in out  # its times are UTC
    changes = [line for line in out.splitlines() if line.startswith(("inserted", "replaced"))]
    assert len(changes) >= 5, out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_redis_example_runs(connector: Connector) -> None:
    out = run_example(examples()["redis"], connector)
    assert "Change(kind=" in out  # on_change=print
    assert "symbol" in out  # the polars frame's header
    assert "UTC" in out  # its dtype row: datetime[ms, UTC]
