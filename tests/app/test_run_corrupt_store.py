"""`fxconnector run` over a store with an unreadable line in the middle of a file (issue 11 p6):
it starts, serves every other bar, and says so in status, errors, logs and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.app.connector import Connector


@pytest.mark.slow
def test_a_corrupt_line_is_reported_and_the_rest_served(tmp_path: Path) -> None:
    workdir = tmp_path / "var"
    first = Connector(workdir)
    try:
        first.wait_ready()
    finally:
        assert first.stop() == 0
    # The fullest EURUSD 1m day file; its middle line is damaged as a bad disk would.
    day_file = max(
        (workdir / "ssot" / "EURUSD" / "1m").glob("*.jsonl"), key=lambda p: p.stat().st_size
    )
    lines = day_file.read_bytes().splitlines()
    middle = len(lines) // 2
    damaged_open = json.loads(lines[middle])["open_ms"]
    neighbours = (json.loads(lines[middle - 1]), json.loads(lines[middle + 1]))
    lines[middle] = b'{"symbol":"EURUSD","tf":"1m","open_ms":' + b"\x00garbage"
    day_file.write_bytes(b"\n".join(lines) + b"\n")

    second = Connector(workdir)
    try:
        second.wait_ready()
        with httpx.Client(timeout=5.0) as http:
            status = http.get(f"{second.base}/api/status").json()
            metrics = http.get(f"{second.base}/metrics").text
            served = http.get(
                f"{second.base}/api/bars",
                params={
                    "symbol": "EURUSD",
                    "tf": "1m",
                    "from_ms": neighbours[0]["open_ms"],
                    "to_ms": neighbours[1]["open_ms"] + 1,
                },
            ).json()["bars"]
    finally:
        assert second.stop() == 0
    where = f"{day_file}:{middle + 1}"
    assert "ssot_corrupt_lines" in status["degraded"]
    assert [e["code"] for e in status["errors"]].count("ssot.corrupt_line") == 1
    assert any(e["message"].startswith(where) for e in status["errors"])
    assert "fxconnector_ssot_corrupt_lines_total 1.0" in metrics
    assert "ssot.corrupt_line_skipped" in second.output()
    assert where in second.output()
    # Both neighbours are served unchanged; the damaged minute is either absent or fetched
    # again, never invented.
    by_open = {bar["open_ms"]: bar for bar in served}
    for bar in neighbours:
        assert by_open[bar["open_ms"]] == bar
    assert set(by_open) <= {neighbours[0]["open_ms"], damaged_open, neighbours[1]["open_ms"]}
