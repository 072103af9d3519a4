"""Open-loop arrivals: intended start times from a clock, independent of response times.

Locust-free. The Locust glue (hooks.py) sleeps until each intended instant and hands it to a
free user; an arrival that finds every user busy waits in a bounded backlog (it is *late* when
it starts more than ``late_after_ns`` after its intended time) or, with the backlog full, is
*dropped*. Latencies are also measured from the intended instant, so a slow generator or a
slow server cannot hide queueing (coordinated omission).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

ARRIVAL_KINDS = ("poisson", "constant")


@dataclass(frozen=True)
class ArrivalSettings:
    rate_per_s: float
    kind: str = "poisson"
    seed: int = 1
    late_after_ms: float = 10.0

    def __post_init__(self) -> None:
        if self.kind not in ARRIVAL_KINDS:
            raise ValueError(f"arrival {self.kind!r}; allowed: {', '.join(ARRIVAL_KINDS)}")
        if not self.rate_per_s > 0:
            raise ValueError(f"rate {self.rate_per_s!r} must be > 0")


MAX_CATCH_UP_S = 5.0
"""A worker anchors its arrivals (and trace rows) on the master's start: one that starts up to
this late sends those it missed at once (counted late); one that joins a running test later
skips the ones due before (they are not its arrivals: it was not there)."""


def intended_times_ns(settings: ArrivalSettings, start_ns: int) -> Iterator[int]:
    """Endless intended start instants (absolute ns), from ``start_ns`` on."""
    rng = random.Random(settings.seed)
    interval_ns = 1e9 / settings.rate_per_s
    t = float(start_ns)
    while True:
        t += rng.expovariate(1.0) * interval_ns if settings.kind == "poisson" else interval_ns
        yield int(t)


class ArrivalBook:
    """Counts intended / sent / late / dropped arrivals and decides admission to the backlog."""

    def __init__(self, settings: ArrivalSettings, backlog_limit: int) -> None:
        self.late_after_ns = int(settings.late_after_ms * 1e6)
        self.backlog_limit = max(0, backlog_limit)
        self.intended = 0
        self.sent = 0
        self.late = 0
        self.dropped = 0

    def offer(self, backlog: int, counted: bool = True) -> bool:
        """An arrival is due with ``backlog`` arrivals already waiting: keep it?
        ``counted=False`` (a warm-up arrival) decides the same but counts nothing."""
        self.intended += counted
        if backlog >= self.backlog_limit:
            self.dropped += counted
            return False
        return True

    def take(self, intended_ns: int, now_ns: int, counted: bool = True) -> None:
        """A user starts the arrival intended at ``intended_ns``."""
        self.sent += counted
        if counted and now_ns - intended_ns > self.late_after_ns:
            self.late += 1

    def drain(self) -> dict[str, int]:
        """Counts since the last drain (a delta for the recorder), then zero them."""
        counts = {
            "intended": self.intended,
            "sent": self.sent,
            "late": self.late,
            "dropped": self.dropped,
        }
        self.intended = self.sent = self.late = self.dropped = 0
        return counts
