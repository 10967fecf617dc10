"""Progress of long work and the once-a-minute summary, driven by injected clocks."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from fxconnector.app.progress import EVERY_S, MinuteSummary, ProgressBar, ProgressReport


class FakeMonotonic:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_not_a_terminal_gives_paced_json_lines_and_a_last_one() -> None:
    stream, clock = io.StringIO(), FakeMonotonic()
    task = ProgressReport(stream, clock=clock, terminal=False).task("catch-up EURUSD", 4320)
    for done in (1440, 2880):  # within EVERY_S of the first line: quiet
        clock.now_s += EVERY_S / 4
        task.update(done, 4320)
    clock.now_s += EVERY_S
    task.update(3000, 4320)
    task.update(4000, 4320)  # too soon after the last line
    task.finish()
    task.finish()  # idempotent
    lines = json_lines(stream.getvalue())
    assert [(x["event"], x["task"], x["done"], x["total"]) for x in lines] == [
        ("progress", "catch-up EURUSD", 0, 4320),
        ("progress", "catch-up EURUSD", 3000, 4320),
        ("progress", "catch-up EURUSD", 4000, 4320),
    ]
    assert [x["percent"] for x in lines] == [0.0, 69.4, 92.6]
    assert {(x["level"], x["logger"]) for x in lines} == {("info", "fxconnector.progress")}


def test_a_terminal_gets_a_bar_per_task_and_no_json() -> None:
    stream = io.StringIO()
    report = ProgressReport(stream, terminal=True)
    first, second = report.task("catch-up EURUSD", 10), report.task("catch-up USDJPY", 20)
    first.update(10, 10)
    second.update(5, 20)
    first.finish()
    second.finish()
    shown = stream.getvalue()
    assert "catch-up EURUSD" in shown
    assert "catch-up USDJPY" in shown
    assert "10/10" in shown
    assert "5/20" in shown
    assert '"event"' not in shown


def test_the_commands_bar_says_the_end_once() -> None:
    stream = io.StringIO()
    bar = ProgressBar("migrate jsonl -> sqlite", stream)
    bar.update(7, 7)
    bar.finish()
    lines = json_lines(stream.getvalue())
    assert [(x["done"], x["percent"]) for x in lines] == [(7, 100.0)]  # said once


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.fields.append({"event": record.getMessage(), **record.fields})  # type: ignore[attr-defined]


def test_the_summary_is_one_line_a_minute_with_what_changed() -> None:
    logger = logging.getLogger("fxconnector.test_progress")
    records = Records()
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        start = 1_700_000_000_000
        summary = MinuteSummary(logger, start)
        facts = {"finals": 5, "newest_final_close_ms": start - 1, "rejects": 1, "reconnects": 0}
        assert not summary.tick(start + 59_999, **facts)
        assert summary.tick(start + 60_000, **facts)
        assert not summary.tick(start + 61_000, **facts)
        later = {"finals": 12, "newest_final_close_ms": start + 59_999, "rejects": 1}
        assert summary.tick(start + 122_500, **later, reconnects=2)
    finally:
        logger.removeHandler(records)
    assert records.fields == [
        {
            "event": "connector.summary",
            "finals": 5,
            "finals_total": 5,
            "newest_final_age_s": 60.0,
            "rejects": 1,
            "rejects_total": 1,
            "reconnects": 0,
            "reconnects_total": 0,
        },
        {
            "event": "connector.summary",
            "finals": 7,
            "finals_total": 12,
            "newest_final_age_s": 62.5,
            "rejects": 0,
            "rejects_total": 1,
            "reconnects": 2,
            "reconnects_total": 2,
        },
    ]
