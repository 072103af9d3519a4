"""The master counts a worker as reported only when it flushed at the stop.

Run in a child process: importing Locust (through loadtests.hooks) patches the process with
gevent, which this pytest process must not be."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
from gevent import monkey; monkey.patch_all()
from types import SimpleNamespace
from loadtests.hooks import Distribution

sent = []
runner = SimpleNamespace(clients=SimpleNamespace(all=[SimpleNamespace(id="silent"),
                                                      SimpleNamespace(id="ok")]))
dist = Distribution(SimpleNamespace(environment=SimpleNamespace(runner=runner, stop_timeout=0)))

def send_message(kind, data, client_id):  # "ok" flushes at once; "silent" never does
    sent.append(client_id)
    if client_id == "ok":
        dist.flushed.add(client_id)

runner.send_message = send_message
dist.workers_reported = {"gone", "silent", "ok"}  # "gone" reported early, then quit
dist.collect_final_reports()
print(sorted(sent), sorted(dist.workers_reported))
"""


def test_only_workers_that_flushed_at_the_stop_count_as_reported() -> None:
    """A worker that sent an early (empty) report and quit before the stop, one that sent no
    final flush, and one that did: only the last counts, so a master whose only worker quit
    says its counts are incomplete (a clean-clone `make test` once saw such a run of 0
    requests called valid: the quitting worker's early report had counted it)."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "['ok', 'silent'] ['ok']", out.stderr
