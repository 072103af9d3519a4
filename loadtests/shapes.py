"""Locust `LoadTestShape`s over the pure schedules of `schedules.py` (step, spike, sweep).

Imported only by Locust-side modules. `ScheduleShape` is abstract, so plain ``locust -f
loadtests/locustfile.py`` keeps its web UI controls; `surgebench run --shape ...` adds
``loadtests/shape_locustfile.py`` (one concrete subclass) to Locust's ``-f`` list. The shape reads
its schedule from the run's configuration (``config.json``, rebuilt by the hooks at init), so the
spec crosses no environment variable.
"""

from __future__ import annotations

from typing import Any

from locust import LoadTestShape

from loadtests.schedules import Schedule, parse_schedule


class ScheduleShape(LoadTestShape):  # type: ignore[misc]
    """Follows the run's `Schedule`; the spawn rate is high so each stage starts at once."""

    abstract = True
    _schedule: Schedule | None = None
    spawn_rate: float = 100.0

    def schedule(self) -> Schedule:
        if self._schedule is None:
            assert self.runner is not None, "Locust sets the runner before the first tick"
            environment: Any = self.runner.environment
            settings = environment.surgebench.settings
            self._schedule = parse_schedule(settings.shape, settings.duration_s)
            self.spawn_rate = settings.effective_spawn_rate
        return self._schedule

    def tick(self) -> tuple[int, float] | None:
        users = self.schedule().users_at(self.get_run_time())  # type: ignore[no-untyped-call]
        if users is None:
            return None
        return users, self.spawn_rate
