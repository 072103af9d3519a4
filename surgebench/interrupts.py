"""Ctrl-C and SIGTERM as a `KeyboardInterrupt` that is never lost.

`surgebench run` and `surgebench worker` turn SIGINT and SIGTERM into `KeyboardInterrupt`, so a
stopped run still stops Locust and its servers and keeps what was measured. Python runs a
signal's handler in the main thread between two bytecodes, and drops an exception raised there
("Exception ignored in ...") when those bytecodes belong to an after-fork hook (logging's
``_releaseLock`` runs in the parent after every fork), a ``__del__`` or a weakref callback. A
SIGTERM that reached a ``--master`` run just as it forked Locust was dropped that way, and the
run then waited out Locust's 60 s for workers (CI, December 2026). So the handler also records
the request, and the waits of the normal path (`wait_child`) raise it again.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

CHECK_S = 0.5
"""How often `wait_child` looks for a stop whose exception was dropped (the longest such a stop
waits)."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_requested = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


@contextmanager
def interruptible() -> Iterator[None]:
    """Inside the block SIGINT and SIGTERM raise `KeyboardInterrupt` (and are remembered for
    `stop_requested`); the handlers from before are restored after it."""
    global _requested
    _requested = False
    previous = {sig: signal.signal(sig, _on_signal) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_requested() -> bool:
    """Whether SIGINT or SIGTERM came since `interruptible` began (raised or dropped)."""
    return _requested


def wait_child(proc: subprocess.Popen[Any]) -> int:
    """``proc.wait()``, that raises `KeyboardInterrupt` once a stop was requested, also when the
    signal's own exception was dropped before or during the wait."""
    while True:
        if _requested:
            raise KeyboardInterrupt
        try:
            return proc.wait(timeout=CHECK_S)
        except subprocess.TimeoutExpired:
            continue
