"""Load schedules as pure functions of elapsed time: step ramp, spike, sweep.

Locust-free; `shapes.py` wraps them in Locust `LoadTestShape`s. A schedule answers
``users_at(t_s)`` (None once it is over). Specs are plain text, recorded in the run's
``config.json`` (``shape``) from which the Locust side rebuilds them:

- ``step:START:STEP:EVERY_S:MAX`` users START, +STEP every EVERY_S seconds, capped at MAX
- ``spike:BASE:PEAK:AT_S:FOR_S`` BASE users, PEAK from AT_S for FOR_S seconds, then BASE again
- ``sweep:U1,U2,...:EACH_S`` each concurrency level for EACH_S seconds
All run for the whole ``--duration`` (the sweep ends after its last level).
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPE_KINDS = ("step", "spike", "sweep")


class ShapeSpecError(ValueError):
    """A shape spec that cannot be parsed; the message shows the allowed forms."""


ALLOWED = "step:START:STEP:EVERY_S:MAX, spike:BASE:PEAK:AT_S:FOR_S, sweep:U1,U2,...:EACH_S"


@dataclass(frozen=True)
class Schedule:
    kind: str
    levels: tuple[int, ...]
    times_s: tuple[float, ...]
    duration_s: float

    def users_at(self, t_s: float) -> int | None:
        if t_s >= self.duration_s:
            return None
        if self.kind == "step":
            start, step, cap = self.levels
            (every_s,) = self.times_s
            return min(cap, start + step * int(t_s // every_s))
        if self.kind == "spike":
            base, peak = self.levels
            at_s, for_s = self.times_s
            return peak if at_s <= t_s < at_s + for_s else base
        (each_s,) = self.times_s
        index = int(t_s // each_s)
        return self.levels[index] if index < len(self.levels) else None

    @property
    def max_users(self) -> int:
        return max(self.levels)


def parse_schedule(spec: str, duration_s: float) -> Schedule:
    kind, _, rest = spec.partition(":")
    parts = rest.split(":")
    try:
        if kind == "step" and len(parts) == 4:
            start, step, every, cap = int(parts[0]), int(parts[1]), float(parts[2]), int(parts[3])
            if start < 0 or step < 0 or every <= 0 or cap < 1:
                raise ValueError
            return Schedule("step", (start, step, cap), (every,), duration_s)
        if kind == "spike" and len(parts) == 4:
            base, peak, at, for_s = int(parts[0]), int(parts[1]), float(parts[2]), float(parts[3])
            if base < 0 or peak < 1 or at < 0 or for_s <= 0:
                raise ValueError
            return Schedule("spike", (base, peak), (at, for_s), duration_s)
        if kind == "sweep" and len(parts) == 2:
            levels = tuple(int(u) for u in parts[0].split(","))
            each = float(parts[1])
            if not levels or min(levels) < 1 or each <= 0:
                raise ValueError
            return Schedule("sweep", levels, (each,), min(duration_s, each * len(levels)))
    except ValueError:
        pass
    raise ShapeSpecError(f"bad shape {spec!r}; allowed: {ALLOWED}")
