"""A pre-imported Python that forks `fxconnector` commands for crash trials (issue 11 p7).

Fifty `kill -9` trials would spend most of their time importing numpy, FastAPI and uvicorn
again (1.5 s of CPU each, far more on a loaded machine). The zygote imports
`fxconnector.app.main` once; each `spawn` forks it and the child runs `main(argv)`, the same
entry point as the console script, with its own stdout/stderr files, in its own process group
(so a test can also kill what the child started, such as an embedded Redis, with `killpg`).
The child is a real, separate process: SIGKILL stops it wherever it is, as it would stop
`fxconnector run`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

_SERVER = r"""
import json, os, sys
import fxconnector.app.main as entry
out = sys.stdout
out.write("ready\n"); out.flush()
for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "wait":
        _, status = os.waitpid(request["pid"], 0)
        out.write(json.dumps({"status": status}) + "\n"); out.flush()
        continue
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setpgid(0, 0)
            for fd, name, flags in (
                (0, os.devnull, os.O_RDONLY),
                (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            ):
                opened = os.open(name, flags, 0o644)
                os.dup2(opened, fd)
                os.close(opened)
            code = entry.main(request["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
    out.write(json.dumps({"pid": pid}) + "\n"); out.flush()
"""


class Zygote:
    """One pre-imported interpreter; `spawn` forks a command, `wait` reaps it."""

    def __init__(self) -> None:
        # One BLAS thread: a fork copies no running thread pool.
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self._ask_line() == "ready"

    def spawn(self, argv: list[str], stdout: Path, stderr: Path) -> int:
        """Fork `fxconnector ARGV...`; its pid (also its process group id)."""
        answer = self._ask(
            {"op": "spawn", "argv": argv, "stdout": str(stdout), "stderr": str(stderr)}
        )
        return answer["pid"]

    def wait(self, pid: int) -> int:
        """Reap `pid`: its exit code, or minus the signal that killed it."""
        status = self._ask({"op": "wait", "pid": pid})["status"]
        if os.WIFSIGNALED(status):
            return -os.WTERMSIG(status)
        return os.WEXITSTATUS(status)

    def kill9(self, pid: int) -> int:
        """SIGKILL `pid` (only it: what it started lives on, orphaned) and reap it."""
        os.kill(pid, signal.SIGKILL)
        return self.wait(pid)

    def _ask(self, request: dict[str, object]) -> dict[str, int]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        answer: dict[str, int] = json.loads(self._ask_line())
        return answer

    def _ask_line(self) -> str:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        assert line, "the zygote died"
        return line.strip()

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> Zygote:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
