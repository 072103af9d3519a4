"""`--processes auto`: how many Locust processes a run needs, and why (one line for the console).

Pure except for `usable_cores` (the CPUs this process may run on). Locust-free.

The per-process capacity is a measured figure, not a guess: one Locust process on the fast reader
read 500 concurrent streams at 20 ms inter-token latency (23,000 token events a second at 29 us
of CPU each, 0.7 of a core) with its read lag p99 at 7 ms, inside the validity limit of half the
ITL (`benchmarks/measurement_fidelity.py`, 2026-12-01, tables in docs/loadtests.md). We plan with
400, a fifth below that, for a machine less quiet than the one measured. What costs CPU is token
events per second, so a run whose mock streams faster or slower than 20 ms a token scales the
figure (only when the run starts the mock and so knows its ITL; a ``--target`` run plans at
20 ms).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

STREAMS_PER_PROCESS = 400
"""Concurrent streams one Locust process holds at `REFERENCE_ITL_MS` with its lag in bounds."""
REFERENCE_ITL_MS = 20.0
LOCAL_SERVER_CORES = 1
"""Cores set aside for the mock and the service a run starts on this machine (both are asyncio
servers whose CPU per token is a fraction of the generator's); 0 with ``--target``."""
MAX_AUTO_PROCESSES = 64


@dataclass(frozen=True)
class ProcessPlan:
    processes: int
    reason: str


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, e.g. under ``taskset`` or a container)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def mock_itl_ms(mock_args: Sequence[str]) -> float | None:
    """The ``--itl-ms`` the mock is started with (the last one given wins), if any."""
    value: float | None = None
    args = list(mock_args)
    for i, arg in enumerate(args[:-1]):
        if arg == "--itl-ms":
            try:
                value = float(args[i + 1])
            except ValueError:
                value = None
    return value if value is not None and math.isfinite(value) and value > 0 else None


def plan_processes(
    users: int, cores: int, local_servers: bool, itl_ms: float | None = None
) -> ProcessPlan:
    """As many processes as ``users`` concurrent streams need at the per-process capacity,
    at most the cores left after the local servers (at least one)."""
    scale = (itl_ms / REFERENCE_ITL_MS) if itl_ms else 1.0
    per_process = max(1, round(STREAMS_PER_PROCESS * min(max(scale, 0.1), 10.0)))
    needed = max(1, math.ceil(users / per_process))
    used = LOCAL_SERVER_CORES if local_servers else 0
    left = max(1, cores - used)
    processes = min(needed, left, MAX_AUTO_PROCESSES)
    itl = f" at {itl_ms:g} ms ITL" if itl_ms else ""
    cores_text = f"{cores} core{'s' if cores != 1 else ''}"
    cores_text += f", {used} used by the local servers" if used else ""
    noun = "process" if processes == 1 else "processes"
    reason = (
        f"{processes} Locust {noun}: {users} users at ~{per_process} per process{itl}; {cores_text}"
    )
    if processes < needed:
        reason += (
            f" (the load needs {needed}: expect an invalid run; give the generator more cores "
            "or fewer --users)"
        )
    return ProcessPlan(processes, reason)
