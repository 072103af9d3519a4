"""Sample a server process over time: RSS and open descriptors (/proc), in-flight and queue
depth (its /metrics). Used by the overload test's RSS check and the benchmarks."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


@dataclass(frozen=True)
class Sample:
    t_s: float
    rss_kib: int
    fds: int
    in_flight: float
    queue_depth: float


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def proc_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def gauge(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else float("nan")


@dataclass
class Sampler:
    """Samples every `period_s` in a thread until `stop()`."""

    pid: int
    metrics_url: str
    period_s: float = 0.1
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while True:
                self.samples.append(self.sample(client))
                if self._stop.wait(self.period_s):
                    return

    def sample(self, client: httpx.Client) -> Sample:
        try:
            text = client.get(self.metrics_url).text
        except httpx.HTTPError:
            text = ""
        return Sample(
            round(time.monotonic() - self.t0, 3),
            proc_rss_kib(self.pid),
            proc_fds(self.pid),
            gauge(text, "surge_service_in_flight"),
            gauge(text, "surge_service_queue_depth"),
        )

    def now_s(self) -> float:
        return time.monotonic() - self.t0

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(10)
        return self.samples

    def peak_rss_kib(self) -> int:
        return max((s.rss_kib for s in self.samples), default=0)

    def drained_at_s(self, after_s: float) -> float | None:
        """First sample time >= after_s from which in flight and queue stay at zero."""
        found = None
        for s in self.samples:
            if s.t_s < after_s:
                continue
            if s.in_flight == 0 and s.queue_depth == 0:
                found = s.t_s if found is None else found
            else:
                found = None
        return found
