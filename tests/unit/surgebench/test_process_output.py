"""`ServerProcess.wait_for_output`: woken by the child's lines, ends when its output ends."""

from __future__ import annotations

import sys

from surgebench.process import ServerProcess

CHILD = """
import sys
print("listening on http://127.0.0.1:1", flush=True)
sys.stdin = open(0)  # DEVNULL: returns at once
print("step one", flush=True)
print("ready: 42", flush=True)
"""


def test_waits_for_a_line_and_gives_up_when_the_output_ends() -> None:
    proc = ServerProcess([sys.executable, "-c", CHILD])
    try:
        assert proc.wait_for_output(lambda out: "ready: 42" in out, 30)
        assert "step one" in proc.output
        # the child has exited: a line it never printed is not waited for until the timeout
        assert not proc.wait_for_output(lambda out: "never printed" in out, 30)
    finally:
        proc.stop()
