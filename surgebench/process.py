"""Start a surgebench server as a child process and wait until it says where it listens.

Every server of the project (`surgebench mock`, `surgebench serve`) prints
``listening on http://HOST:PORT`` as its first line of output once its socket accepts
connections. This module is the one place that waits for that line; the load runner, the
benchmarks and the integration tests all use it, so none of them sleeps or guesses a port.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

LISTENING_RE = re.compile(r"listening on (http://[^\s]+)")


class ServerStartError(RuntimeError):
    """The child exited or stayed silent before printing its address."""


class ServerProcess:
    """A running child server. Use as a context manager, or call `stop()`."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        start_timeout_s: float = 30.0,
        cpu_affinity: Sequence[int] | None = None,
    ) -> None:
        self.argv = list(argv)
        self._lines: list[str] = []
        self._listening = threading.Event()
        self._log: IO[str] | None = log_path.open("a", encoding="utf-8") if log_path else None
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        self.process = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=full_env,
            start_new_session=True,
        )
        if cpu_affinity is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(self.process.pid, set(cpu_affinity))
        self.url = ""
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        if not self._listening.wait(start_timeout_s) or not self.url:
            output = "".join(self._lines[-20:])
            self.stop()
            raise ServerStartError(
                f"{' '.join(self.argv)!r} did not print 'listening on http://...' within "
                f"{start_timeout_s:g}s; its last output:\n{output}"
            )

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if len(self._lines) < 2000:
                self._lines.append(line)
            if self._log is not None:
                self._log.write(line)
                self._log.flush()
            if not self.url:
                match = LISTENING_RE.search(line)
                if match:
                    self.url = match.group(1).rstrip("/")
                    self._listening.set()
        self._listening.set()  # exited: wake the waiter, which then sees no url

    @property
    def output(self) -> str:
        """What the child printed so far (the first 2000 lines)."""
        return "".join(self._lines)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout_s: float = 10.0) -> int:
        """Ask the child to stop (SIGINT, then SIGTERM, then SIGKILL); return its exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            try:
                self.process.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                continue
        code = self.process.wait()
        self._reader.join(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def surgebench_argv(*args: str) -> list[str]:
    """The argv that runs `surgebench ARGS` with this interpreter (no PATH lookup)."""
    return [sys.executable, "-m", "surgebench", *args]
