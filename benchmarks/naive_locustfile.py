"""The obvious Locust way to time an SSE stream (compared in benchmarks/measurement_fidelity.py).

FastHttpUser + Locust's own ``iter_lines`` (geventhttpclient reads 1 KiB blocks under it), TTFT at
the first content line it yields, ITL between content lines. Raw values go to the JSON file named
by ``NAIVE_OUT`` when Locust quits (requests started after ``NAIVE_WARMUP_S``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from locust import FastHttpUser, constant, events, task

OUT = os.environ.get("NAIVE_OUT", "naive.json")
WARMUP_S = float(os.environ.get("NAIVE_WARMUP_S", "0"))
SAMPLES: dict[str, list[float]] = {"ttft_ms": [], "itl_ms": [], "lag_ms": []}
T0 = [0.0]


def _start(**_: Any) -> None:
    T0[0] = time.time()


def _quit(**_: Any) -> None:
    with open(OUT, "w", encoding="utf-8") as fh:
        json.dump(SAMPLES, fh)


events.test_start.add_listener(_start)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_quit)  # type: ignore[no-untyped-call]


class NaiveUser(FastHttpUser):  # type: ignore[misc]
    wait_time = constant(0)

    @task
    def stream(self) -> None:
        body = {
            "model": "mock",
            "messages": [{"role": "user", "content": "hello there"}],
            "stream": True,
        }
        start = time.time()
        first = last = 0.0
        gaps: list[float] = []
        lags: list[float] = []
        stamp = 0
        for line in self.client.iter_lines("/chat/completions", method="POST", json=body):
            now = time.time()
            if line.startswith(": t="):
                stamp = int(line[4:])
                continue
            if not line.startswith("data: {") or '"content":"' not in line:
                continue
            if '"content":""' in line:
                continue
            if stamp:
                lags.append((now * 1e9 - stamp) / 1e6)
                stamp = 0
            if not first:
                first = now
            else:
                gaps.append((now - last) * 1000)
            last = now
        if start - T0[0] >= WARMUP_S and first:
            SAMPLES["ttft_ms"].append((first - start) * 1000)
            SAMPLES["itl_ms"].extend(gaps)
            SAMPLES["lag_ms"].extend(lags)
