"""Settings for the whole suite."""

from __future__ import annotations

from hypothesis import settings

# No per-example deadline: a busy machine (or make test's parallel processes) slows examples
# down, and a deadline then fails a correct test. Speed is shown by benchmarks/, not by tests.
settings.register_profile("surgebench", deadline=None)
settings.load_profile("surgebench")
