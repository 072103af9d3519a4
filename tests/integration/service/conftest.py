"""Real processes on 127.0.0.1 port 0: `surgebench mock` behind `surgebench serve`."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx


def metric(base_url: str, name: str, labels: str = "") -> float:
    text = httpx.get(base_url + "/metrics", timeout=5).text
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", re.M)
    match = pattern.search(text)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        name, data = "message", None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if data is not None:
            events.append((name, data))
    return events
