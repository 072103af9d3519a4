"""Locust `LoadTestShape`s over the pure schedules of `schedules.py` (step, spike, sweep).

Imported only by the locustfile. The classes here are abstract so that Locust never picks one up
by itself; the locustfile makes a concrete one only when ``SURGEBENCH_SHAPE`` is set (that is
how `surgebench run --shape ...` selects it), so plain ``locust -f`` keeps its web UI controls.
"""

from __future__ import annotations

import os
from typing import Any

from locust import LoadTestShape

from loadtests.schedules import Schedule, parse_schedule

SHAPE_ENV = "SURGEBENCH_SHAPE"
"""``SPEC|DURATION_S|SPAWN_RATE``, e.g. ``spike:5:60:20:10|60|100``."""


class ScheduleShape(LoadTestShape):  # type: ignore[misc]
    """Follows a `Schedule`; the spawn rate is high so each stage starts at once."""

    abstract = True
    schedule: Schedule
    spawn_rate: float = 100.0

    def tick(self) -> tuple[int, float] | None:
        users = self.schedule.users_at(self.get_run_time())  # type: ignore[no-untyped-call]
        if users is None:
            return None
        return users, self.spawn_rate


def shape_from_env(environ: dict[str, str] | None = None) -> type[ScheduleShape] | None:
    """A concrete shape class from ``SURGEBENCH_SHAPE``, or None when it is unset."""
    text = (environ if environ is not None else dict(os.environ)).get(SHAPE_ENV, "")
    if not text:
        return None
    spec, _, rest = text.partition("|")
    duration, _, rate = rest.partition("|")
    schedule = parse_schedule(spec, float(duration or "inf"))
    attrs: dict[str, Any] = {
        "abstract": False,
        "schedule": schedule,
        "spawn_rate": float(rate or 100.0),
    }
    return type("SurgeShape", (ScheduleShape,), attrs)
