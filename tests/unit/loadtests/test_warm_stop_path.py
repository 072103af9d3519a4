"""`warm_stop_path` makes the scan that Locust's ``Runner.stop()`` triggers (``inspect.stack()``
-> ``inspect.getmodule`` over every loaded module) happen at the test's start, not at its stop
while streams are still read (the cost itself is shown by benchmarks/measurement_fidelity.py)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import inspect, locust.runners, loadtests.hooks as hooks
path = inspect.getabsfile(locust.runners)
before = path in inspect.modulesbyfile
hooks.warm_stop_path()
print(before, path in inspect.modulesbyfile, inspect.modulesbyfile.get(path))
"""


def test_the_module_scan_is_done_and_cached_at_the_start() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert out == ["False", "True", "locust.runners"], out
