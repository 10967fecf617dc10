#!/usr/bin/env python3
"""CI smoke of the README's own `make run`, in a fresh clone of the commit under test.

What a new user does: clone (with ../shared beside the clone), `make run` with the relative
default workdir `var` on a free port. Then, in order, each step bounded:
1. /api/health/ready answers 200 (the first `make run` also creates .venv);
2. one live final 1m bar (of a minute that opened after ready, not the catch-up) arrives over
   /api/stream (SSE; the demo finalises a minute ~2 s after it ends, so within ~150 s); it
   keeps the contract (event_ts == close_ms, source history);
3. SIGINT to make's child (the connector): make exits 0 within 5 s;
4. `make run` again on the same workdir, SIGINT to the whole process group as a terminal's
   Ctrl-C does: every process of it is gone within 5 s, with no traceback;
5. `.venv/bin/fxconnector audit --workdir var`, exactly as the README says, exits 0.

Standard library only (it runs before any venv exists). Exit 0 when every step held, 1 with
the failed step and the tails of the logs otherwise.
"""

# ruff: noqa: S603, S607, S310 - it runs git and make by name, and opens our own http:// URLs
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

READY_TIMEOUT_S = 900.0  # the first `make run` creates .venv and installs the package
RESTART_READY_TIMEOUT_S = 120.0
FINAL_TIMEOUT_S = 150.0
STOP_TIMEOUT_S = 5.0
MINUTE_MS = 60_000


class SmokeFailed(Exception):
    pass


def say(line: str) -> None:
    print(f"smoke: {line}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fresh_clone(source: Path, into: Path) -> Path:
    commit = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    clone = into / "fxconnector"
    subprocess.run(["git", "clone", "--quiet", str(source), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", "--detach", commit], check=True)
    shared = (source / ".." / "shared").resolve()
    if shared.is_dir():
        (into / "shared").symlink_to(shared, target_is_directory=True)
    beside = f" with ../shared -> {shared}" if shared.is_dir() else " (no ../shared found)"
    say(f"cloned {commit[:12]} into {clone}{beside}")
    return clone


class MakeRun:
    """One `make run HTTP=...` in its own session (as a terminal would run it: its own group)."""

    def __init__(self, clone: Path, port: int, logs: Path, name: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.clone = clone
        self.out = logs / f"{name}.stdout"
        self.err = logs / f"{name}.stderr"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                ["make", "run", f"HTTP=127.0.0.1:{port}"],
                cwd=clone,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise SmokeFailed(f"make run exited with {self.process.returncode} before ready")
            try:
                with urllib.request.urlopen(f"{self.url}/api/health/ready", timeout=5) as answer:
                    if answer.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise SmokeFailed(f"not ready within {timeout_s:g} s")

    def child(self) -> int:
        """make's child process: the connector (make's shell execs a single command)."""
        children = [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and _ppid(entry) == self.process.pid
        ]
        if len(children) != 1:
            raise SmokeFailed(f"make has {len(children)} children, expected the connector")
        return children[0]

    def all_gone_within(self, timeout_s: float) -> list[str]:
        """Wait for make, then for every process running from the clone (the connector, its
        embedded redis-server); the command lines of those still alive after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout_s)
        left = _running_from(self.clone)
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = _running_from(self.clone)
        if self.process.poll() is None:
            left.append("make run")
        return left

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def tails(self) -> str:
        return "\n".join(
            f"--- {path.name} (last lines) ---\n{_tail(path)}" for path in (self.out, self.err)
        )


def _ppid(proc_entry: Path) -> int | None:
    try:
        stat = (proc_entry / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _running_from(folder: Path) -> list[str]:
    """Command lines of live processes that name `folder` (zombies and this script aside)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(folder) in command:  # a zombie's cmdline is empty
            out.append(command.strip())
    return out


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read: {exc})"


def one_final_1m(url: str, after_ms: int) -> dict[str, object]:
    """The first final 1m bar over /api/stream of a minute opening at or after `after_ms`: a
    live final of the fast path, not one of the startup catch-up."""
    deadline = time.monotonic() + FINAL_TIMEOUT_S
    request = urllib.request.Request(
        f"{url}/api/stream?tfs=1m", headers={"Accept": "text/event-stream"}
    )
    with urllib.request.urlopen(request, timeout=30) as stream:
        event, data = "", []
        while time.monotonic() < deadline:
            raw = stream.readline()
            if not raw:
                raise SmokeFailed("the stream ended")
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line:
                if event == "bar" and data:
                    bar = json.loads("\n".join(data))
                    live = isinstance(bar["open_ms"], int) and bar["open_ms"] >= after_ms
                    if bar["complete"] and bar["tf"] == "1m" and live:
                        return dict(bar)
                event, data = "", []
    raise SmokeFailed(f"no final 1m bar over /api/stream within {FINAL_TIMEOUT_S:g} s")


def check_final(bar: dict[str, object]) -> None:
    open_ms, close_ms = bar["open_ms"], bar["close_ms"]
    if not (isinstance(open_ms, int) and isinstance(close_ms, int)):
        raise SmokeFailed(f"open_ms/close_ms are not integers: {bar}")
    problems = []
    if close_ms != open_ms + MINUTE_MS - 1:
        problems.append("close_ms != open_ms + 59999")
    if bar["event_ts"] != close_ms:
        problems.append("event_ts != close_ms")
    if bar["source"] != "history":
        problems.append(f"source {bar['source']!r} is not history")
    if problems:
        raise SmokeFailed(f"the final breaks the contract ({', '.join(problems)}): {bar}")


def smoke(source: Path, work: Path) -> None:
    logs = work / "logs"
    logs.mkdir()
    clone = fresh_clone(source, work)

    first = MakeRun(clone, free_port(), logs, "make-run-1")
    try:
        say(f"make run HTTP=127.0.0.1:{first.url.rsplit(':', 1)[1]}: waiting for ready")
        say(f"ready after {first.wait_ready(READY_TIMEOUT_S):.0f} s")
        started = time.monotonic()
        now_ms = time.time_ns() // 1_000_000
        bar = one_final_1m(first.url, now_ms - now_ms % MINUTE_MS)
        check_final(bar)
        say(
            f"live final {bar['symbol']} 1m open_ms={bar['open_ms']} over /api/stream after "
            f"{time.monotonic() - started:.0f} s"
        )
        child = first.child()
        os.kill(child, signal.SIGINT)
        try:
            code = first.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise SmokeFailed(f"make run still running {STOP_TIMEOUT_S:g} s after SIGINT") from None
        if code != 0:
            raise SmokeFailed(f"make run exited with {code} after SIGINT to the connector")
        left = first.all_gone_within(STOP_TIMEOUT_S)
        if left:
            raise SmokeFailed(f"alive after the connector stopped: {left}")
        say("SIGINT to the connector: make run exited 0")
    except BaseException:
        print(first.tails(), flush=True)
        first.kill()
        raise

    second = MakeRun(clone, free_port(), logs, "make-run-2")
    try:
        say(f"ready again after {second.wait_ready(RESTART_READY_TIMEOUT_S):.0f} s")
        os.killpg(second.process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        left = second.all_gone_within(STOP_TIMEOUT_S)
        if left:
            raise SmokeFailed(f"alive {STOP_TIMEOUT_S:g} s after Ctrl-C: {left}")
        code = second.process.returncode
        if code not in (0, -signal.SIGINT):  # make dies of the SIGINT it got itself
            raise SmokeFailed(f"make run exited with {code} after Ctrl-C")
        errors = second.err.read_text("utf-8", "replace")
        if "Traceback" in errors or '"connector.stopped"' not in errors:
            raise SmokeFailed("Ctrl-C: a traceback, or no connector.stopped line")
        say("Ctrl-C to the process group: everything stopped, no traceback")
    except BaseException:
        print(second.tails(), flush=True)
        second.kill()
        raise

    audit = subprocess.run(
        [".venv/bin/fxconnector", "audit", "--workdir", "var"],
        cwd=clone,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    if audit.returncode != 0:
        print(audit.stdout[-3000:], audit.stderr[-3000:], sep="\n", flush=True)
        demo_grid = subprocess.run(
            [*audit.args, "--calendar", "always_open"],
            cwd=clone,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=600,
        )
        if demo_grid.returncode == 0:
            say("(with --calendar always_open, the demo's calendar, the same audit passes)")
        raise SmokeFailed(f"fxconnector audit --workdir var exited {audit.returncode}")
    say("fxconnector audit --workdir var: exit 0")


def main() -> int:
    source = Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix="fxconnector-smoke-"))
    try:
        smoke(source, work)
    except SmokeFailed as exc:
        say(f"FAILED: {exc}")
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say("passed: make run from a fresh clone is ready, streams a final, stops cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
