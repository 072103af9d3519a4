"""`surgebench run` under injected upstream faults: outcomes classified as the service counted
them; and the upstream API key, set only in the environment, reaches the upstream and nothing
else (no log, no results file, no error body)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from reports.results import read_summary
from surgebench.process import surgebench_argv
from tests.integration.conftest import Start

from .conftest import assert_leak_free, metric, metrics_text, parse_sse, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
KEY = "sk-surgebench-test-9f3c1e7a55d0"
FAULTS = ("--fault-503-prob", "0.1", "--disconnect-prob", "0.1", "--disconnect-after-tokens",
          "2", "--stall-prob", "0.1", "--stall-after-tokens", "2", "--stall-ms", "3000",
          "--seed", "3")  # fmt: skip


def surge_run(out: Path, *args: str, env: dict[str, str] | None = None) -> tuple[str, Path]:
    """`surgebench run ARGS --out OUT --no-report`; (all it printed, the run folder)."""
    proc = subprocess.run(
        surgebench_argv("run", *args, "--out", str(out), "--no-report"),
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        env={**os.environ, **(env or {})},
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("results: "), output[-3000:]
    return output, Path(last.removeprefix("results: "))


def test_harness_counts_each_outcome_class_as_the_service_does(
    start: Start, tmp_path: Path
) -> None:
    mock = start("mock", "--ttft-ms", "20", "--itl-ms", "5", "--output-tokens", "10", *FAULTS)
    url = serve(start, mock.url, "--max-concurrent", "4", "--queue-size", "2",
                "--idle-timeout-s", "0.5")  # fmt: skip
    _, run_dir = surge_run(tmp_path, "--target", url, "--duration", "5s", "--users", "10",
                           "--warmup", "0s", "--reject-wait", "0.1s",
                           "--stop-timeout", "10s")  # fmt: skip
    summary = read_summary(run_dir)
    outcomes = summary.outcomes
    print(f"\nharness outcomes: {outcomes}")
    assert_leak_free(url)
    text = metrics_text(url)
    service = {
        o: metric(url, "surge_service_requests_total", f'{{endpoint="stream",outcome="{o}"}}',
                  text=text)
        for o in ("ok", "rejected", "timeout", "upstream_error", "cancelled")
    }  # fmt: skip
    print(f"service counted:  {service}")
    # Every class the faults produce is present, and nothing is misfiled as a generic error.
    assert outcomes["ok"] > 0 and outcomes["upstream_error"] > 0 and outcomes["timeout"] > 0
    assert outcomes["error"] == 0 and outcomes["client_error"] == 0
    # Each client-side count equals the service's own count of the same class.
    for name in ("ok", "rejected", "timeout", "upstream_error"):
        assert outcomes[name] == service[name], (name, outcomes, service)


def test_api_key_goes_upstream_and_nowhere_else(start: Start, tmp_path: Path) -> None:
    env = {"SURGE_SERVICE_UPSTREAM_API_KEY": KEY, "SURGE_MOCK_API_KEY": KEY,
           "SURGE_SERVICE_LOG_LEVEL": "debug", "SURGE_SERVICE_ACCESS_LOG": "true"}  # fmt: skip
    output, run_dir = surge_run(
        tmp_path, "--duration", "4s", "--users", "6", "--warmup", "0s", "--reject-wait", "0.1s",
        *(f"--mock-{flag.removeprefix('--')}" if flag.startswith("--") else flag
          for flag in FAULTS),
        "--service-idle-timeout-s", "0.5", env=env,
    )  # fmt: skip
    summary = read_summary(run_dir)
    # The mock demands the key: answered streams prove it was sent upstream.
    assert summary.outcomes["ok"] > 0 and summary.outcomes["client_error"] == 0
    assert summary.outcomes["upstream_error"] > 0  # error bodies were written too
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "service.log" for p in files), [p.name for p in files]
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in output
    # A key the upstream refuses: the 401 reaches the client as an upstream error event whose
    # text does not carry the key, and the service's own output never shows it.
    mock = start("mock", "--ttft-ms", "5", "--output-tokens", "3", env={"SURGE_MOCK_API_KEY": "x"})
    service = start("serve", "--upstream-url", mock.url + "/v1", "--log-level", "debug",
                    "--access-log", env={"OPENAI_API_KEY": KEY})  # fmt: skip
    resp = httpx.post(service.url + "/chat/stream", json={"question": "q"}, timeout=10)
    kind, data = parse_sse(resp.text)[-1]
    assert (
        kind == "error"
        and data["error"]["type"] == "upstream"
        and "401" in data["error"]["message"]
    )
    chat = httpx.post(service.url + "/chat", json={"question": "q"}, timeout=10)
    assert chat.status_code == 502 and KEY not in chat.text and KEY not in resp.text
    assert_leak_free(service.url)
    service.stop()
    assert KEY not in service.output and KEY not in mock.output


def test_loopback_by_default_cors_off_no_tracebacks(start: Start) -> None:
    mock = start("mock", "--ttft-ms", "5", "--output-tokens", "3")
    service = start("serve", "--upstream-url", mock.url + "/v1")
    # Neither was given --host: both bound the loopback (the non-loopback warnings are tested by
    # their owners: tests/integration/service and tests/integration/mock_llm test_behaviour).
    for proc in (mock, service):
        assert proc.output.splitlines()[0].startswith("listening on http://127.0.0.1:")
    origin = {"Origin": "https://evil.example"}
    pre = httpx.options(service.url + "/chat/stream", timeout=10, headers={
        **origin, "Access-Control-Request-Method": "POST"})  # fmt: skip
    post = httpx.post(service.url + "/chat", json={"question": "q"}, headers=origin, timeout=10)
    assert post.status_code == 200
    for resp in (pre, post):
        assert not any(h.startswith("access-control-") for h in resp.headers), resp.headers
    assert pre.status_code in (404, 405) and "Traceback" not in pre.text
    # Requests that make the service fail in many ways: JSON errors, never a traceback.
    bad = [
        httpx.post(service.url + "/chat", content=b"\x00" * 100, timeout=10),
        httpx.get(service.url + "/chat", timeout=10),
        httpx.post(service.url + "/nope", timeout=10),
        httpx.post(service.url + "/chat/batch", json={"questions": [1, {}]}, timeout=10),
    ]
    for resp in bad:
        assert 400 <= resp.status_code < 500, resp.text
        assert resp.headers["content-type"] == "application/json"
        assert "Traceback" not in resp.text and 'File "' not in resp.text
    assert_leak_free(service.url)
