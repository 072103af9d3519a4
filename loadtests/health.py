"""The load generator's health, once a second: its own CPU and lag, and the machine's contention.

Locust-free and gevent-free (the sampler greenlet in `loadtests.hooks` calls `HealthSampler.sample`
once a second, outside the per-token path). What separates "the generator saturated" from "the
machine was busy":

- the generator's CPU (psutil, percent of one core) and its event-loop lag;
- its **run-queue wait**: ``/proc/self/schedstat`` field 2, nanoseconds the process's main thread
  was runnable but waiting for a CPU (another process had it);
- the machine: ``/proc/stat`` (busy and steal jiffies of all CPUs) and ``/proc/pressure/cpu``
  (PSI ``some avg10``: share of time some runnable task waited for a CPU).

Each process keeps its points by wall-clock second; a worker sends them with its reports and the
master merges them per second: the worst process's lag, run-queue wait and CPU, the sum of the
processes' CPU (so the other processes' share excludes every generator process), and the
machine's figures. Client lag p99 per second is read from the recorder's cumulative histogram
(the counts added since the last sample), so nothing is added to the per-token path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPORT_KEY = "surgebench_health"
"""The key of a worker's per-second health points in its ``report_to_master`` data."""
MAX_POINTS = 86_400
"""At most a day of seconds kept per process (a bound; older points are dropped)."""

MAX_FIELDS = (
    "client_lag_p99_ms",
    "read_lag_p99_ms",
    "loop_lag_max_ms",
    "cpu_percent",
    "runqueue_wait_percent",
)
MACHINE_FIELDS = ("machine_busy_percent", "steal_percent", "psi_cpu_some_avg10")
SUM_FIELDS = ("cpu_sum_percent",)


def read_text(path: str) -> str | None:
    try:
        return Path(path).read_text("ascii")
    except (OSError, UnicodeDecodeError):
        return None


def schedstat_wait_ns(text: str | None) -> int | None:
    """Field 2 of ``/proc/PID/schedstat``: ns spent runnable, waiting on a run queue."""
    parts = (text or "").split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


def proc_stat_jiffies(text: str | None) -> tuple[int, int, int] | None:
    """``(busy, steal, total)`` jiffies of all CPUs from ``/proc/stat``'s first line."""
    for line in (text or "").splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:9] if v.isdigit()]
            if len(values) < 8:
                return None
            user, nice, system, idle, iowait, irq, softirq, steal = values
            busy = user + nice + system + irq + softirq + steal
            return busy, steal, busy + idle + iowait
    return None


def psi_some_avg10(text: str | None) -> float | None:
    """``some avg10`` of ``/proc/pressure/cpu`` (percent), None where PSI is off or absent."""
    for line in (text or "").splitlines():
        if line.startswith("some "):
            for field in line.split()[1:]:
                key, _, value = field.partition("=")
                if key == "avg10":
                    try:
                        return float(value)
                    except ValueError:
                        return None
    return None


def p99_of_new_counts(hist: Any, previous: np.ndarray | None) -> tuple[float | None, np.ndarray]:
    """p99 (ms) of the values recorded into an HDR histogram (microseconds) since `previous`, a
    copy of its counts then; returns the figure and the counts now. A histogram that was reset
    in between (a worker's report) counts from zero."""
    now = np.ctypeslib.as_array(hist.counts)[: hist.counts_len].astype(np.int64)  # (C copy)
    new = now if previous is None or len(previous) != len(now) else now - previous
    if (new < 0).any():
        new = now
    total = int(new.sum())
    if total == 0:
        return None, now
    index = int(np.searchsorted(np.cumsum(new), math.ceil(0.99 * total)))
    return float(hist.get_highest_equivalent_value(hist.get_value_from_index(index))) / 1000, now


@dataclass
class HealthSampler:
    """One process's per-second health points (call `sample` once a second)."""

    cpu_percent: Callable[[], float]
    read: Callable[[str], str | None] = read_text
    cores: int = os.cpu_count() or 1

    def __post_init__(self) -> None:
        self.points: dict[int, dict[str, float | None]] = {}
        self._loop_max_ms = 0.0
        self._wait_ns = schedstat_wait_ns(self.read("/proc/self/schedstat"))
        self._jiffies = proc_stat_jiffies(self.read("/proc/stat"))
        self._counts: dict[str, tuple[Any, np.ndarray]] = {}
        """Per figure: the cumulative histogram last sampled and a copy of its counts then."""

    def loop_lag(self, lag_ms: float) -> None:
        """Every event-loop lag sample (100 a second): the second's largest is kept."""
        self._loop_max_ms = max(self._loop_max_ms, lag_ms)

    def sample(
        self, epoch_s: int, wall_s: float, lag_hist: Any | None, read_hist: Any | None = None
    ) -> None:
        """The figures of the second that just ended (`wall_s`: its length as measured);
        ``lag_hist``/``read_hist``: the recorder's cumulative client-lag and read-lag
        histograms (None where there are none)."""
        wait_ns = schedstat_wait_ns(self.read("/proc/self/schedstat"))
        jiffies = proc_stat_jiffies(self.read("/proc/stat"))
        cpu = self.cpu_percent()
        point: dict[str, float | None] = {
            "cpu_percent": cpu,
            "cpu_sum_percent": cpu,
            "loop_lag_max_ms": self._loop_max_ms,
            "cores": float(self.cores),
            "psi_cpu_some_avg10": psi_some_avg10(self.read("/proc/pressure/cpu")),
            "runqueue_wait_percent": None,
            "machine_busy_percent": None,
            "steal_percent": None,
            "client_lag_p99_ms": None,
            "read_lag_p99_ms": None,
        }
        if wait_ns is not None and self._wait_ns is not None and wall_s > 0:
            waited_s = max(0, wait_ns - self._wait_ns) / 1e9
            point["runqueue_wait_percent"] = 100.0 * waited_s / wall_s
        if jiffies is not None and self._jiffies is not None and jiffies[2] > self._jiffies[2]:
            total = jiffies[2] - self._jiffies[2]
            point["machine_busy_percent"] = 100.0 * (jiffies[0] - self._jiffies[0]) / total
            point["steal_percent"] = 100.0 * (jiffies[1] - self._jiffies[1]) / total
        for name, hist in (("client_lag_p99_ms", lag_hist), ("read_lag_p99_ms", read_hist)):
            if hist is not None:
                last = self._counts.get(name)
                previous = last[1] if last is not None and last[0] is hist else None
                point[name], counts = p99_of_new_counts(hist, previous)
                self._counts[name] = (hist, counts)
        self._wait_ns, self._jiffies, self._loop_max_ms = wait_ns, jiffies, 0.0
        self.points[epoch_s] = point
        while len(self.points) > MAX_POINTS:
            del self.points[min(self.points)]

    def drain(self) -> dict[str, dict[str, float | None]]:
        """The points since the last drain, as plain data (a worker's report), then forgotten."""
        data = {str(k): v for k, v in self.points.items()}
        self.points = {}
        return data


def merge_points(
    into: dict[int, dict[str, float | None]], data: Mapping[str, Mapping[str, Any]] | None
) -> None:
    """Add a worker's drained points: per second, the worst process (max), the CPU sum, and the
    machine's figures (max: workers on one machine see the same)."""
    for key, point in (data or {}).items():
        second = into.setdefault(int(key), {})
        for name, value in point.items():
            if value is None or not isinstance(value, int | float):
                second.setdefault(name, None)
                continue
            old = second.get(name)
            if name in SUM_FIELDS and old is not None:
                second[name] = float(old) + float(value)
            else:
                second[name] = float(value) if old is None else max(float(old), float(value))


def series(
    points: Mapping[int, Mapping[str, float | None]], start_epoch_s: float
) -> list[dict[str, float | None]]:
    """Summary-ready points in time order: ``t_s`` from the test start and, derived, the share
    of all CPUs the other processes took (machine busy minus every generator process)."""
    out: list[dict[str, float | None]] = []
    for epoch_s in sorted(points):
        point = dict(points[epoch_s])
        busy, cpu_sum = point.get("machine_busy_percent"), point.get("cpu_sum_percent")
        cores = point.get("cores") or 1.0
        point["others_cpu_percent"] = (
            max(0.0, busy - (cpu_sum or 0.0) / cores) if busy is not None else None
        )
        out.append({"t_s": float(epoch_s - int(start_epoch_s)), **point})
    return out


def mean_of(points: list[dict[str, float | None]], name: str) -> float | None:
    values = [v for p in points if (v := p.get(name)) is not None]
    return sum(values) / len(values) if values else None


def max_of(points: list[dict[str, float | None]], name: str) -> float | None:
    values = [v for p in points if (v := p.get(name)) is not None]
    return max(values) if values else None
