"""`kill -9` at any moment loses no acknowledged final and leaves no corrupt store (DESIGN §12).

A child process appends batches in a loop (each batch repeats a few bars already stored, which
must stay duplicates), flushes, then prints how many bars are acknowledged. The test reads a few
acknowledgements, kills the child with SIGKILL wherever it happens to be, and reopens the store;
three rounds per store kind, each child resuming where the store ends.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from fxconnector.core.model.bar import StoredFinal
from fxconnector.core.time_geom import MINUTE_MS, Timeframe
from fxconnector.core.utils import json_codec
from fxconnector.runtime.store.factory import StoreKind
from tests.runtime.store.test_store_suite import KINDS, MONDAY_MS, REPO, open_kind, sqlite_rows

_CHILD: Final = """
import sys
from pathlib import Path
from fxconnector.core.model.bar import OhlcvEvent, Source
from fxconnector.core.time_geom import Timeframe
from fxconnector.runtime.store.factory import open_store

MONDAY_MS, BATCH = 1549238400000, 40
store = open_store(sys.argv[1], Path(sys.argv[2]), fsync_interval_ms=5)
store.open()
last = store.last_open_ms("EURUSD", Timeframe.M1)
done = 0 if last is None else (last - MONDAY_MS) // 60000 + 1
if done:
    # A kill between a batch's append and its mark_fetched leaves stored bars without coverage:
    # like a real backfill, the resumed run re-marks what it finds stored.
    store.mark_fetched("EURUSD", MONDAY_MS, MONDAY_MS + done * 60000)

def bar(i):
    start = MONDAY_MS + i * 60000
    price = round(1.1456 + (i % 50) * 0.00001, 5)
    return OhlcvEvent(
        symbol="EURUSD", tf=Timeframe.M1, open_ms=start, close_ms=start + 59999, open=price,
        high=round(price + 0.0001, 5), low=price, close=price, volume=i, tick_count=i,
        complete=True, source=Source.HISTORY, event_ts=start + 59999, rev=0,
    )

while True:
    store.append([bar(i) for i in range(max(0, done - 5), done + BATCH)])
    store.mark_fetched("EURUSD", MONDAY_MS + done * 60000, MONDAY_MS + (done + BATCH) * 60000)
    done += BATCH
    store.flush()
    print(done, flush=True)
"""


def _run_until_killed(kind: StoreKind, root: Path, acknowledgements: int) -> int:
    """Start the child, read `acknowledgements` lines, SIGKILL it; the last count it printed."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, kind, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    acknowledged = -1
    try:
        assert child.stdout is not None
        for _ in range(acknowledgements):
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else "child ended"
            acknowledged = int(line)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return acknowledged


@pytest.mark.parametrize("kind", KINDS)
def test_kill_9_loses_no_acknowledged_bar(kind: StoreKind, tmp_path: Path) -> None:
    root = tmp_path / "ssot"
    for round_number, acknowledgements in enumerate((3, 11, 6)):
        acknowledged = _run_until_killed(kind, root, acknowledgements)

        store = open_kind(kind, root)
        try:
            stored = list(store.bars("EURUSD", Timeframe.M1))
            assert len(stored) >= acknowledged > 40 * round_number
            # Batches are written in order, so only an unacknowledged tail may be missing.
            assert [b.open_ms for b in stored] == [
                MONDAY_MS + i * MINUTE_MS for i in range(len(stored))
            ]
            assert {b.rev for b in stored} == {0}  # the repeated bars stayed duplicates
            assert [b.volume for b in stored[:acknowledged]] == list(range(acknowledged))
            # Coverage is one interval from Monday over at least every acknowledged minute.
            covered = store.fetched_intervals("EURUSD", MONDAY_MS, MONDAY_MS + 10**9)
            assert len(covered) == 1, covered
            assert covered[0][0] == MONDAY_MS
            assert covered[0][1] >= MONDAY_MS + acknowledged * MINUTE_MS
        finally:
            store.close()
        _assert_each_key_once(kind, root, len(stored))


def _assert_each_key_once(kind: StoreKind, root: Path, expected: int) -> None:
    """No duplicate key on disk: each open_ms has exactly one line / row, and it is rev 0."""
    if kind == "sqlite":
        rows = sqlite_rows(root)[0]
        assert len(rows) == expected
        assert {row[3] for row in rows} == {0}  # column 3 is rev
        return
    keys: collections.Counter[tuple[int, int]] = collections.Counter()
    for path in sorted((root / "EURUSD" / "1m").glob("*.jsonl")):
        data = path.read_bytes()
        assert data.endswith(b"\n")  # recovery left no torn tail behind
        for line in data.splitlines():
            bar = json_codec.decode(line, StoredFinal)
            keys[(bar.open_ms, bar.rev)] += 1
    assert len(keys) == expected
    assert set(keys.values()) == {1}
