"""A real spike run: rejections counted apart, phases in summary.json, the verdict printed, server
metrics scraped."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from reports.servermetrics import SERVER_METRICS_FILE, epoch_of, read_server_metrics
from surgebench.process import ServerProcess, surgebench_argv
from tests.integration.loadtests.conftest import RunCommand

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_a_shape_in_one_process_ends_the_test_once(surge_run: RunCommand) -> None:
    """The shape ends the test, once: our run clock used to stop it a second time, and Locust
    printed a traceback per user already stopping ("unexpected state: stopping")."""
    run = surge_run(
        "--duration", "5s", "--shape", "spike:2:6:1:1", "--warmup", "1s", "--processes", "1",
        "--mock-ttft-ms", "50", "--mock-itl-ms", "10", "--mock-output-tokens", "20",
        timeout_s=100,
    )  # fmt: skip
    assert run.code == 0, run.output
    assert run.run_dir is not None and run.summary is not None
    assert run.summary.outcomes.get("ok", 0) > 0
    log = (run.run_dir / "locust.log").read_text()
    assert "Traceback" not in log and "unexpected state" not in log, log[-3000:]


def test_spike_run_has_phases_verdict_progress_and_server_metrics(surge_run: RunCommand) -> None:
    run = surge_run(
        "--duration", "8s", "--shape", "spike:2:14:3:3", "--warmup", "1s", "--processes", "2",
        "--reject-wait", "0.2s", "--progress", "2s",
        "--mock-ttft-ms", "50", "--mock-itl-ms", "10", "--mock-output-tokens", "20",
        "--service-workers", "2", "--service-queue-size", "2",
        timeout_s=100,
    )  # fmt: skip
    assert run.code == 0, run.output
    s, run_dir = run.summary, run.run_dir
    assert s is not None and run_dir is not None
    # phases: before (from the end of the warm-up), the spike, after; their counts add up
    assert [(p.kind, p.users) for p in s.phases] == [
        ("before_spike", 2),
        ("spike", 14),
        ("after_spike", 2),
    ]
    before, spike, after = s.phases
    assert (before.start_s, before.end_s, spike.start_s, spike.end_s, after.start_s) == (
        1.0, 3.0, 3.0, 6.0, 6.0,
    )  # fmt: skip
    for key, total in s.outcomes.items():
        assert sum(p.outcomes[key] for p in s.phases) == total, key
    assert before.outcomes["rejected"] == 0  # 2 users, 2 service workers: nothing to shed
    assert spike.outcomes["rejected"] > 0 and spike.metric("rejected_ms").count > 0
    assert spike.metric("ttft_ms").count == spike.outcomes["ok"]
    assert "queue_wait" in spike.breakdown_ms
    # the whole run: rejections counted apart from errors, each with its time to refusal
    assert s.outcomes["upstream_error"] == s.outcomes["error"] == 0, s.outcomes
    assert s.metric("rejected_ms").count == s.outcomes["rejected"]
    assert 0 < s.rejection_rate < 1
    # the service's own account of where TTFT went: queueing shows up as queue wait
    assert s.breakdown_ms["queue_wait"].max is not None and s.breakdown_ms["queue_wait"].max > 50
    assert s.breakdown_ms["upstream_ttft"].p50 is not None
    assert s.metric("thinking_ms").count == s.outcomes["ok"]
    assert sum(p.rejected for p in s.timeseries) == s.outcomes["rejected"]
    # Locust's table agrees: rejections in their own row, not failures; the warm-up apart
    rows = {
        tuple(r.split(",")[:4]) for r in (run_dir / "locust_stats.csv").read_text().splitlines()[1:]
    }
    assert ("POST", "/chat/stream (rejected)", str(s.outcomes["rejected"]), "0") in rows, rows
    unfinished = s.outcomes.get("unfinished", 0)  # in flight at the stop: their own row too
    answered = s.requests - s.outcomes["rejected"] - unfinished
    assert ("POST", "/chat/stream", str(answered), "0") in rows, rows
    if unfinished:
        assert ("POST", "/chat/stream (unfinished)", str(unfinished), "0") in rows, rows
    # the verdict in words opens the console's end, one sentence per phase
    assert "2 users (1-3 s): TTFT p95 " in run.output
    assert "Spike to 14 users (3-6 s): " in run.output and " rejected after a median " in run.output
    assert "Back to 2 users (6-" in run.output
    # the progress line: ok/s and rejected/s apart, TTFT over the last window
    assert "ok/s=" in run.output and "rejected/s=" in run.output
    assert "ttft p50/p95 (last 2s)=" in run.output
    # the servers' side: both /metrics scraped about once a second, gauges present
    lines = [json.loads(x) for x in (run_dir / SERVER_METRICS_FILE).read_text().splitlines()]
    assert {line["source"] for line in lines} == {"service", "upstream"}
    start = epoch_of(s.started_at)
    assert start is not None
    servers = read_server_metrics(run_dir, start)
    service_times, in_flight = servers["service"].series("surge_service_in_flight")
    assert len(service_times) >= 5 and max(in_flight) >= 1
    _, queue = servers["service"].series("surge_service_queue_depth")
    assert max(queue) >= 1  # the spike filled the queue
    _, running = servers["upstream"].series("vllm:num_requests_running")
    assert max(running) >= 1
    assert servers["service"].errors == 0


def test_target_run_scrapes_the_given_metrics_url(surge_run: RunCommand) -> None:
    """``--target`` starts no servers; ``--scrape URL`` still puts the server's side beside."""
    argv = surgebench_argv(
        "mock", "--port", "0", "--ttft-ms", "20", "--itl-ms", "5", "--output-tokens", "10"
    )
    with ServerProcess(argv) as mock:
        run = surge_run(
            "--target", f"{mock.url}/v1", "--user", "direct", "--users", "3",
            "--duration", "4s", "--warmup", "0s", "--scrape", mock.url,
        )  # fmt: skip
    assert run.code == 0, run.output
    assert run.run_dir is not None and run.summary is not None
    start = epoch_of(run.summary.started_at)
    assert start is not None
    servers = read_server_metrics(run.run_dir, start)
    (source,) = servers
    assert source == urlsplit(mock.url).netloc
    _, running = servers[source].series("vllm:num_requests_running")
    assert len(running) >= 3 and max(running) >= 1
    [phase] = run.summary.phases
    assert (phase.kind, phase.users, phase.requests) == ("whole", 3, run.summary.requests)
