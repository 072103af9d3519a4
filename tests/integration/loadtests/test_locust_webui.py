"""A plain ``locust -f loadtests/locustfile.py`` with its web UI, against the real service.

No class named: StreamingChatUser alone. Locust's table counts each request once (rejections in
their own row, not failures; no extra TTFT/ITL rows); the "LLM streams" tab's rows ride in the
UI's own stats JSON; summary.json lands in results/ without --sb-out.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from reports.results import read_summary
from tests.integration.conftest import Start

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def test_plain_locust_web_ui_tells_the_truth(start: Start, tmp_path: Path) -> None:
    mock = start("mock", "--ttft-ms", "40", "--itl-ms", "5", "--output-tokens", "8")
    service = start("serve", "--upstream-url", mock.url + "/v1", "--admission", "queue",
                    "--max-concurrent", "2", "--queue-size", "1")  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests/locustfile.py"),
         "--autostart", "--autoquit", "0", "-u", "6", "-r", "6", "-t", "60s", "-H", service.url,
         "--web-host", "127.0.0.1", "--web-port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        live: dict[str, Any] = {}
        stats: dict[str, Any] = {}
        page = ""
        for _ in range(400):  # up to ~40 s: until streams were served and rejected after the
            # default 5 s warm-up
            time.sleep(0.1)
            try:
                stats = get_json(f"http://127.0.0.1:{port}/stats/requests")
            except OSError:
                continue
            if not page:  # the main page, while the UI is surely up (it quits with the test)
                page = (
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                )
            rows = {r["name"]: r for r in stats["stats"]}
            if rows.get("/chat/stream", {}).get("num_requests") and "/chat/stream (rejected)" in (
                rows
            ):
                live = get_json(f"http://127.0.0.1:{port}/surgebench/live")
                break
        assert live, stats
        names = {(r["method"], r["name"]) for r in stats["stats"]}
        assert names <= {
            ("POST", "/chat/stream"),
            ("POST", "/chat/stream (rejected)"),
            ("POST", "/chat/stream (warm-up)"),
            ("", "Aggregated"),
        }, names
        rejected = next(r for r in stats["stats"] if r["name"] == "/chat/stream (rejected)")
        assert rejected["num_failures"] == 0
        tab = stats["extended_stats"][0]
        assert tab["key"] == "surgebench"
        metrics = {row["metric"]: row for row in tab["data"]}
        assert {"TTFT", "ITL", "client lag", "outcomes", "verdict"} <= set(metrics)
        assert int(metrics["TTFT"]["count"]) > 0 and float(metrics["TTFT"]["p50"]) >= 40
        assert "rejected" in metrics["outcomes"]["note"]
        assert metrics["verdict"]["note"].startswith(("valid", "INVALID"))
        assert [row["metric"] for row in live["rows"]] == [row["metric"] for row in tab["data"]]
        assert "LLM streams" in page  # the tab, in the template arguments of the main page
        # Stop with the UI's Stop button, then end the process as a container would (SIGTERM):
        # Locust quits and writes summary.json. The 60 s timer is only a bound.
        stop = urllib.request.Request(f"http://127.0.0.1:{port}/stop", data=b"", method="POST")
        assert json.loads(urllib.request.urlopen(stop, timeout=5).read())["success"]
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, output[-3000:]
    assert '"StreamingChatUser": 6' in output  # the only class spawned
    written = list((tmp_path / "results").glob("locust-*/summary.json"))
    assert len(written) == 1, output[-3000:]
    summary = read_summary(written[0].parent)
    assert summary.outcomes["ok"] > 0 and summary.outcomes["rejected"] > 0
