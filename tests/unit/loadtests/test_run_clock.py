"""`run_clock` does not stop a test a second time while a stop (a shape's end) is under way.

Run in a child process: importing Locust (through loadtests.hooks) patches the process with
gevent, which this pytest process must not be."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
from gevent import monkey; monkey.patch_all()
import time
from types import SimpleNamespace
import gevent
from locust.runners import STATE_CLEANUP, STATE_RUNNING, STATE_STOPPED
from loadtests.hooks import run_clock

class FakeRunner:
    def __init__(self, state):
        self.state, self.quits = state, []
    def quit(self):
        self.quits.append(self.state)

def clock_state(runner):
    return SimpleNamespace(run_time_s=0.0, environment=SimpleNamespace(runner=runner))

running = FakeRunner(STATE_RUNNING)
gevent.spawn(run_clock, clock_state(running), time.time_ns()).join(timeout=10)
stopping = FakeRunner(STATE_CLEANUP)  # a shape's end is stopping the users
clock = gevent.spawn(run_clock, clock_state(stopping), time.time_ns())
gevent.sleep(0.3)
during = (list(stopping.quits), clock.ready())
stopping.state = STATE_STOPPED
clock.join(timeout=10)
print(running.quits, during, stopping.quits)
"""


def test_quits_at_the_deadline_but_never_during_a_stop_under_way() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    # running: one quit at the deadline; a stop under way: no second stop of the same users,
    # then one quit (which only ends the process) once that stop has ended
    assert out == "['running'] ([], False) ['stopped']", out
