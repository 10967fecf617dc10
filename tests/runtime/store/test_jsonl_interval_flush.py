"""The JSONL store's interval flush (issue 12): it bounds the delay for writers that never
flush, and never fsyncs on the appending thread (the event loop) in the gap between two of an
owner's flushes, however slow the disk. The fsync is observed (and held, as a slow disk would)
by wrapping the store's own `sync`; the interval's clock is the test's."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from fxconnector.runtime.store import ssot_jsonl
from fxconnector.runtime.store.jsonl_files import sync
from fxconnector.runtime.store.ssot_jsonl import JsonlStore
from tests.runtime.store.test_store_suite import make_bar


def test_an_append_between_an_owners_flushes_never_fsyncs_on_its_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    monkeypatch.setattr(ssot_jsonl, "time", SimpleNamespace(monotonic=lambda: now[0]))
    store = JsonlStore(tmp_path / "ssot", fsync_interval_ms=50)
    store.open()
    gate = threading.Event()
    started = threading.Event()
    syncing: list[threading.Thread] = []

    def observed_sync(fds: list[int], dirs: list[Path]) -> None:
        syncing.append(threading.current_thread())
        if threading.current_thread() is not threading.main_thread():
            started.set()
            assert gate.wait(10)  # a slow disk: held until the test lets it go
        sync(fds, dirs)

    monkeypatch.setattr(ssot_jsonl, "sync", observed_sync)
    store.append([make_bar(0)])
    owner = threading.Thread(target=store.flush)  # the pipeline's flush, off the loop
    owner.start()
    assert started.wait(10)
    store.append([make_bar(1)])  # while the owner's flush is fsyncing
    now[0] = 0.2  # the disk took 200 ms, four intervals
    gate.set()
    owner.join(10)
    # Bar 1 has waited past the interval, but the owner's flush just ended: its next flush
    # covers bar 1; this append does not fsync on the appending thread.
    store.append([make_bar(2)])
    assert syncing == [owner]
    store.flush()
    assert syncing == [owner, threading.main_thread()]
    # A writer that never flushes: the interval still bounds the delay.
    now[0] = 0.5
    store.append([make_bar(3)])
    assert len(syncing) == 2
    now[0] = 0.6
    store.append([make_bar(4)])
    assert syncing == [owner, threading.main_thread(), threading.main_thread()]
    store.close()
    reopened = JsonlStore(tmp_path / "ssot")
    reopened.open()
    assert len(list(reopened.bars("EURUSD", make_bar(0).tf))) == 5
    reopened.close()
