"""Fuzzing the JSONL store's own lines (issue 11 p6): lines damaged anywhere in any file are each
reported with file and line, every other line is served unchanged, nothing is invented, and a
damaged 1m day is not counted as fetched (its minutes are missing, never quiet).

A line is damaged the ways a disk or an editor damages one (cut short, overwritten with random
bytes, emptied) and keeps its newline, so line numbers stay put. A changed digit inside a valid
line would be silent and is out of reach of any line format without checksums; it is not tried.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from fxconnector.core.model.bar import StoredFinal
from fxconnector.core.time_geom import DAY_MS, MINUTE_MS, Timeframe
from fxconnector.core.utils import json_codec
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.runtime.store.test_store_suite import MONDAY_MS, make_bar

MINUTES = 90
#: Minutes stored on Sunday 23:00-24:00 and Monday 00:00-00:30 (two day files), some revised.
FIRST = -60
REVISED = (-50, -3, 0, 7, 20)
_BASE: list[Path] = []


def _base_store() -> Path:
    """Built once: 1m and 1h finals over two UTC days, revisions, coverage."""
    if not _BASE:
        root = Path(tempfile.mkdtemp(prefix="jsonl-fuzz-")) / "ssot"
        store = JsonlStore(root)
        store.open()
        store.append([make_bar(i) for i in range(FIRST, FIRST + MINUTES)])
        store.append([make_bar(i, shift=0.0001) for i in REVISED], reason="repair")
        store.append([make_bar(i, shift=0.0002) for i in REVISED[:2]], reason="repair 2")
        store.append([make_bar(-1, tf=Timeframe.H1), make_bar(0, tf=Timeframe.H1)])
        store.mark_fetched("EURUSD", MONDAY_MS + FIRST * MINUTE_MS, MONDAY_MS + 30 * MINUTE_MS)
        store.close()
        _BASE.append(root)
    return _BASE[0]


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.jsonl"))


damage = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"\n", b" ")),
    st.integers(min_value=1, max_value=120).map(lambda n: ("cut", n)),
)


@given(
    hits=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 10_000), damage), min_size=1, max_size=6
    )
)
def test_damaged_lines_are_reported_and_every_other_line_served(
    hits: list[tuple[int, int, object]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(shutil.copytree(_base_store(), Path(tmp) / "ssot"))
        files = _files(root)
        original = {path: path.read_bytes().split(b"\n")[:-1] for path in files}
        damaged: dict[Path, set[int]] = {}
        for file_pick, line_pick, how in hits:
            path = files[file_pick % len(files)]
            lines = path.read_bytes().split(b"\n")[:-1]
            index = line_pick % len(lines)
            line = original[path][index]
            if isinstance(how, tuple):
                new = line[: max(0, len(line) - how[1])]
            else:
                new = how if isinstance(how, bytes) else b""
            if new == line:
                continue
            lines[index] = new
            path.write_bytes(b"\n".join(lines) + b"\n")
            damaged.setdefault(path, set()).add(index + 1)

        store = JsonlStore(root)
        report = store.open()
        try:
            for path, numbers in damaged.items():
                for number in numbers:
                    where = f"{path}:{number}: "
                    assert any(c.startswith(where) for c in report.corrupt_lines), (where, report)
            _check_served(store, original, damaged)
        finally:
            store.close()


def _check_served(
    store: JsonlStore, original: dict[Path, list[bytes]], damaged: dict[Path, set[int]]
) -> None:
    readable: dict[tuple[str, int], list[StoredFinal]] = {}
    hurt: set[tuple[str, int]] = set()
    for path, lines in original.items():
        if path.name == "fetched.jsonl":
            continue
        for number, line in enumerate(lines, start=1):
            bar = json_codec.decode(line, StoredFinal)
            key = (bar.tf.value, bar.open_ms)
            if number in damaged.get(path, set()):
                hurt.add(key)
            else:
                readable.setdefault(key, []).append(bar)
    for tf in (Timeframe.M1, Timeframe.H1):
        served = {bar.open_ms: bar for bar in store.bars("EURUSD", tf)}
        keys = {open_ms for (name, open_ms) in readable | dict.fromkeys(hurt) if name == tf.value}
        assert set(served) <= keys  # nothing invented
        for open_ms in keys:
            key = (tf.value, open_ms)
            kept = readable.get(key, [])
            if key not in hurt:
                assert served[open_ms] == kept[-1]  # untouched: served exactly
            elif open_ms in served:
                # A damaged key is served from one of its readable lines, the newest of them.
                assert served[open_ms] == max(kept, key=lambda bar: bar.rev)
    # A 1m day with a damaged bar line is no longer counted as fetched.
    fetched = store.fetched_intervals("EURUSD", MONDAY_MS - DAY_MS, MONDAY_MS + DAY_MS)
    fetched_was_hurt = any(p.name == "fetched.jsonl" for p in damaged)
    for path in damaged:
        if path.parent.name == "1m":
            day_start = _day_start(path)
            assert not any(a < day_start + DAY_MS and b > day_start for a, b in fetched), path
    if not damaged or (not fetched_was_hurt and not any(p.parent.name == "1m" for p in damaged)):
        assert fetched == [(MONDAY_MS + FIRST * MINUTE_MS, MONDAY_MS + 30 * MINUTE_MS)]


def _day_start(path: Path) -> int:
    return MONDAY_MS if path.stem == "2019-02-04" else MONDAY_MS - DAY_MS
