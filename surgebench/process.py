"""Start a surgebench server as a child process and wait until it says where it listens.

Every server of the project (`surgebench mock`, `surgebench serve`) prints
``listening on http://HOST:PORT`` as its first line of output once its socket accepts
connections. This module is the one place that waits for that line; the load runner, the
benchmarks and the integration tests all use it, so none of them sleeps or guesses a port.

Children die with their parent, however it dies (even `kill -9`, which runs no cleanup): on
Linux each child asks the kernel for SIGTERM when its parent exits (`PR_SET_PDEATHSIG`, set
between fork and exec: `child_popen_options`), and a server child also watches a pipe whose
write end only the parent holds (`SURGE_PARENT_FD`, `watch_parent`): when the parent is gone the
pipe reads EOF and the server stops itself as on SIGTERM. The pipe works on any POSIX system.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

LISTENING_RE = re.compile(r"listening on (http://[^\s]+)")
PARENT_FD_ENV = "SURGE_PARENT_FD"
"""`FD:PID`: the pipe a server child watches for the exit of its parent PID."""
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, resolved in the parent (the child between fork and exec only calls it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM when the parent exits."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def child_popen_options() -> dict[str, Any]:
    """`subprocess.Popen` keyword arguments that make the child die with this process (Linux;
    elsewhere nothing, and servers rely on `watch_parent`)."""
    return {"preexec_fn": _die_with_parent} if _PRCTL is not None else {}


def watch_parent(loop: asyncio.AbstractEventLoop) -> None:
    """In a server child started by `ServerProcess`: SIGTERM itself (a graceful stop) when the
    parent's end of the `SURGE_PARENT_FD` pipe closes, i.e. when the parent is gone."""
    fd_text, _, parent_text = os.environ.pop(PARENT_FD_ENV, "").partition(":")
    if not (fd_text.isdigit() and parent_text.isdigit()) or int(parent_text) != os.getppid():
        return  # not ours: inherited by a grandchild (e.g. a replica worker), where the number
        # may name an unrelated descriptor
    fd = int(fd_text)

    def parent_gone() -> None:
        try:
            if os.read(fd, 1):
                return  # the parent never writes; ignore stray bytes
        except BlockingIOError:
            return
        except OSError:
            pass
        loop.remove_reader(fd)
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        os.set_blocking(fd, False)
        loop.add_reader(fd, parent_gone)
    except (OSError, ValueError):
        return  # not a pipe we can watch (e.g. the variable leaked into an unrelated process)


class ServerStartError(RuntimeError):
    """The child exited or stayed silent before printing its address."""

    def __init__(self, message: str, returncode: int | None = None, output: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        """The child's exit code when it exited by itself; None when it was stopped."""
        self.output = output
        """Its last lines of output."""


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
        self._printed = threading.Condition()
        """Notified at each line the child prints, and when its output ends (`wait_for_output`)."""
        self._ended = False
        self._listening = threading.Event()
        self._log: IO[str] | None = log_path.open("a", encoding="utf-8") if log_path else None
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        watch_fd, self._parent_fd = os.pipe()  # the child watches the read end
        full_env[PARENT_FD_ENV] = f"{watch_fd}:{os.getpid()}"
        try:
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
                pass_fds=(watch_fd,),
                **child_popen_options(),
            )
        finally:
            os.close(watch_fd)
        if cpu_affinity is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(self.process.pid, set(cpu_affinity))
        self.url = ""
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        if not self._listening.wait(start_timeout_s) or not self.url:
            ended = self._ended  # the output ended: the child is exiting by itself
            code = self.stop()
            output = "".join(self._lines[-20:])
            why = f"(it exited with code {code})" if ended else f"within {start_timeout_s:g}s"
            raise ServerStartError(
                f"{' '.join(self.argv)!r} did not print 'listening on http://...' {why}; "
                f"its last output:\n{output}",
                code if ended else None,
                output,
            )

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._printed:
                if len(self._lines) < 2000:
                    self._lines.append(line)
                self._printed.notify_all()
            if self._log is not None:
                self._log.write(line)
                self._log.flush()
            if not self.url:
                match = LISTENING_RE.search(line)
                if match:
                    self.url = match.group(1).rstrip("/")
                    self._listening.set()
        with self._printed:
            self._ended = True
            self._printed.notify_all()
        self._listening.set()  # exited: wake the waiter, which then sees no url

    def wait_for_output(self, predicate: Callable[[str], bool], timeout_s: float) -> bool:
        """Wait until `predicate` holds for the output so far, the output ends, or `timeout_s`
        passes (woken by each printed line, no polling); whether it holds."""
        with self._printed:
            return bool(
                self._printed.wait_for(
                    lambda: predicate("".join(self._lines)) or self._ended, timeout_s
                )
                and predicate("".join(self._lines))
            )

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
        if self._parent_fd >= 0:
            os.close(self._parent_fd)
            self._parent_fd = -1
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
