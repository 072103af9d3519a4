"""The shape of a `surgebench run --shape ...`: given to Locust as a second ``-f`` file.

Locust uses the one concrete `LoadTestShape` it finds among its locustfiles; this file holds it,
so runs without ``--shape`` (and plain ``locust -f loadtests/locustfile.py``) have none.
"""

from __future__ import annotations

from loadtests.shapes import ScheduleShape


class SurgeShape(ScheduleShape):
    """The run's ``--shape`` schedule (read from its configuration at the first tick)."""

    abstract = False
