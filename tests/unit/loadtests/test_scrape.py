"""Scraping the servers' /metrics: parsing, targets, the --scrape flag, the written lines."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from loadtests.scrape import (
    Scraper,
    ScrapeTarget,
    given_targets,
    local_targets,
    parse_metrics,
)
from loadtests.settings import SettingsError, parse_run_args
from reports.servermetrics import SERVER_METRICS_FILE, read_server_metrics

TEXT = """\
# HELP surge_service_in_flight requests holding a slot
# TYPE surge_service_in_flight gauge
surge_service_in_flight 3.0
# HELP surge_service_requests_total requests
# TYPE surge_service_requests_total counter
surge_service_requests_total{outcome="ok"} 10.0
surge_service_requests_total{outcome="rejected"} 2.0
surge_service_requests_created{outcome="ok"} 1.7e9
# HELP vllm:time_to_first_token_seconds ttft
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1"} 4.0
vllm:time_to_first_token_seconds_bucket{le="+Inf"} 5.0
vllm:time_to_first_token_seconds_sum 0.6
vllm:time_to_first_token_seconds_count 5.0
"""


def test_parse_keeps_gauges_counters_and_histogram_sums_not_buckets() -> None:
    assert parse_metrics(TEXT) == {
        "surge_service_in_flight": 3.0,
        'surge_service_requests_total{outcome="ok"}': 10.0,
        'surge_service_requests_total{outcome="rejected"}': 2.0,
        "vllm:time_to_first_token_seconds_sum": 0.6,
        "vllm:time_to_first_token_seconds_count": 5.0,
    }
    assert len(parse_metrics(TEXT, max_series=2)) == 2


def test_targets() -> None:
    assert local_targets({"service": "http://127.0.0.1:1/"}) == [
        ScrapeTarget("service", "http://127.0.0.1:1/metrics")
    ]
    assert given_targets(["http://h:9/", "https://g/prom/metrics"]) == [
        ScrapeTarget("h:9", "http://h:9/metrics"),
        ScrapeTarget("g", "https://g/prom/metrics"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scrape", "http://h:1/metrics"], "--scrape: only with --target"),
        (["--target", "http://t:1", "--scrape", "ftp://h"], "--scrape: bad URL 'ftp://h'"),
        (["--target", "http://t:1", *["--scrape", "http://h:1"] * 9], "at most 8"),
    ],
)
def test_scrape_flag_is_checked(args: list[str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        parse_run_args(args)


def test_scrape_flag_reaches_the_settings() -> None:
    settings = parse_run_args(["--target", "http://t:1", "--scrape", "http://h:2/metrics"])
    assert settings.scrape == ("http://h:2/metrics",)


def test_scraper_writes_a_line_per_target_and_tick_and_survives_a_dead_one(tmp_path: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = TEXT.encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        dead = "http://127.0.0.1:9/metrics"  # discard port: refused at once
        path = tmp_path / SERVER_METRICS_FILE
        scraper = Scraper([ScrapeTarget("service", url), ScrapeTarget("gone", dead)], path, 0.05)
        scraper.start()
        deadline = threading.Event()
        for _ in range(200):  # bounded: at most ~10 s
            if path.exists() and len(path.read_text().splitlines()) >= 6:
                break
            deadline.wait(0.05)
        scraper.stop()
    finally:
        server.shutdown()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) >= 6
    ok = [x for x in lines if x["source"] == "service"]
    assert all(x["values"]["surge_service_in_flight"] == 3.0 for x in ok)
    assert all("error" in x for x in lines if x["source"] == "gone")
    series = read_server_metrics(tmp_path, lines[0]["t"])
    assert series["gone"].errors == len(lines) - len(ok)
    times, values = series["service"].series("surge_service_in_flight")
    assert values == [3.0] * len(ok) and times == sorted(times) and times[0] == 0.0
