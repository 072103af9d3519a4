"""The servers' side of the timeline: scrape Prometheus ``/metrics`` once a second during a run.

Locust-free: the runner (the parent process, not a Locust process) starts a `Scraper` thread
around the Locust run. Each tick it fetches every target's ``/metrics``, parses it with
prometheus-client's text parser and appends one JSON line per target to
``server_metrics.jsonl`` in the run folder (format: `reports.servermetrics`). A target that
does not answer costs one short timeout per tick and is noted in the line (``error``); the run
goes on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from reports.servermetrics import SERVER_METRICS_FILE

INTERVAL_S = 1.0
TIMEOUT_S = 0.5
MAX_BODY_BYTES = 4_000_000
"""A larger ``/metrics`` answer is not parsed (its line says so)."""
MAX_SERIES = 500
"""Series kept per target and scrape (first come, in exposition order)."""
MAX_LINES = 200_000
"""Lines written per run at most (over two days of two targets at 1 s)."""
KEPT_SUFFIXES = ("", "_total", "_sum", "_count")
"""Samples kept: gauges and counters, and the sum/count of histograms and summaries (their
buckets and quantiles would multiply the file for little)."""


@dataclass(frozen=True)
class ScrapeTarget:
    """One ``/metrics`` endpoint: ``service`` or ``upstream`` (the LLM server)."""

    source: str
    url: str


def parse_metrics(text: str, max_series: int = MAX_SERIES) -> dict[str, float]:
    """``{'name{label="v"}': value}`` of the samples worth keeping (see `KEPT_SUFFIXES`)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            suffix = sample.name[len(family.name) :]
            if suffix not in KEPT_SUFFIXES or sample.name.endswith("_created"):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            key = f"{sample.name}{{{labels}}}" if labels else sample.name
            values[key] = float(sample.value)
            if len(values) >= max_series:
                return values
    return values


def scrape_once(client: httpx.Client, target: ScrapeTarget) -> dict[str, object]:
    """One JSON line's content: ``{t, source, values}`` or ``{t, source, error}``."""
    line: dict[str, object] = {"t": round(time.time(), 3), "source": target.source}
    try:
        with client.stream("GET", target.url, timeout=TIMEOUT_S) as response:
            if response.status_code != 200:
                line["error"] = f"HTTP {response.status_code}"
                return line
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    line["error"] = f"answer larger than {MAX_BODY_BYTES} bytes"
                    return line
        line["values"] = parse_metrics(body.decode("utf-8", "replace"))
    except (httpx.HTTPError, ValueError) as exc:
        line["error"] = f"{type(exc).__name__}: {exc}"[:200]
    return line


class Scraper:
    """A thread that scrapes `targets` every `interval_s` into `path` until `stop()`."""

    def __init__(
        self,
        targets: Sequence[ScrapeTarget],
        path: Path,
        interval_s: float = INTERVAL_S,
        client: Callable[[], httpx.Client] = httpx.Client,
    ) -> None:
        self.targets = list(targets)
        self.path = path
        self.interval_s = interval_s
        self.lines = 0
        self._client = client
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="surgebench-scrape", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 2 * TIMEOUT_S * max(1, len(self.targets)))

    def _run(self) -> None:
        with self._client() as client, self.path.open("a", encoding="utf-8") as out:
            next_tick = time.monotonic()
            while not self._stop.is_set() and self.lines < MAX_LINES:
                for target in self.targets:
                    out.write(json.dumps(scrape_once(client, target)) + "\n")
                    self.lines += 1
                out.flush()
                next_tick += self.interval_s
                self._stop.wait(max(0.0, next_tick - time.monotonic()))


@contextmanager
def scraping(targets: Sequence[ScrapeTarget], run_dir: Path) -> Iterator[Scraper | None]:
    """Scrape `targets` into ``run_dir/server_metrics.jsonl`` for the duration of the block."""
    if not targets:
        yield None
        return
    scraper = Scraper(targets, run_dir / SERVER_METRICS_FILE)
    scraper.start()
    try:
        yield scraper
    finally:
        scraper.stop()


def given_targets(urls: Sequence[str]) -> list[ScrapeTarget]:
    """``--scrape`` URLs, each named by its ``host:port`` (a URL without a path gets
    ``/metrics``)."""
    targets = []
    for url in urls:
        parts = urlsplit(url)
        full = url if parts.path not in ("", "/") else url.rstrip("/") + "/metrics"
        targets.append(ScrapeTarget(parts.netloc, full))
    return targets


def local_targets(urls: dict[str, str]) -> list[ScrapeTarget]:
    """The ``/metrics`` of the servers the runner started, by source (``service``, ``upstream``)."""
    return [ScrapeTarget(source, url.rstrip("/") + "/metrics") for source, url in urls.items()]
