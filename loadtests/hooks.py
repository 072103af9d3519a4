"""Locust event wiring: options, recorders, samplers, worker -> master merge, the summary.

Imported only by the locustfile (it imports gevent and Locust). Every process keeps one
`SurgeState` on ``environment.surgebench``. Workers (and a local runner) record requests, sample
their own CPU and event-loop lag, and (workers) send deltas through ``report_to_master``; the
master (or the local runner) merges them and writes ``summary.json`` when it quits, the point
at which the workers' final reports have arrived (docs/loadtests.md).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent
import psutil  # type: ignore[import-untyped]
from gevent.queue import Queue
from locust.runners import MasterRunner, WorkerRunner

from loadtests.arrivals import ArrivalBook, ArrivalSettings, intended_times_ns
from loadtests.phases import PhaseSpan, phase_starts_ns, plan_phases
from loadtests.prompts import PromptSource
from loadtests.recorder import Recorder, RequestRecord, Slo
from loadtests.summary import GuardSettings, RunInfo, build_summary
from reports.results import write_summary

log = logging.getLogger("surgebench")

REPORT_KEY = "surgebench"
FLUSH_MSG = "surgebench_flush"
FLUSHED_MSG = "surgebench_flushed"
LOOP_TICK_S = 0.01
CPU_TICK_S = 1.0


def add_arguments(parser: Any) -> None:
    """Our Locust options (also shown in the web UI); all start with ``--sb-``."""
    group = parser.add_argument_group("surgebench")
    group.add_argument("--sb-out", default="", help="write summary.json into this folder")
    group.add_argument("--sb-name", default="locust", help="run name in the summary")
    group.add_argument("--sb-config", default="", help="config.json to embed in the summary")
    group.add_argument("--sb-warmup-s", type=float, default=0.0, help="seconds left out of stats")
    group.add_argument("--sb-prompt-words", default="uniform:8:64", help="prompt length spec")
    group.add_argument("--sb-max-tokens", default="", help="output length spec (max_tokens)")
    group.add_argument("--sb-prompts", default="", help="JSONL prompt file")
    group.add_argument("--sb-model", default="mock", help="model name for DirectLLMUser")
    group.add_argument("--sb-seed", type=int, default=1)
    group.add_argument("--sb-rate", type=float, default=0.0, help="open-loop arrivals/s (total)")
    group.add_argument("--sb-arrival", default="poisson", choices=["poisson", "constant"])
    group.add_argument("--sb-processes", type=int, default=1, help="load processes (for --rate)")
    group.add_argument("--sb-timeout-s", type=float, default=120.0, help="per-read timeout")
    group.add_argument("--sb-think-s", type=float, default=0.0, help="closed-loop think time")
    group.add_argument("--sb-reject-wait-s", type=float, default=0.0, help="pause after 503/429")
    group.add_argument("--sb-slo-ttft-ms", type=float, default=0.0)
    group.add_argument("--sb-slo-tpot-ms", type=float, default=0.0)
    group.add_argument("--sb-slo-e2e-ms", type=float, default=0.0)
    group.add_argument("--sb-max-client-lag-ms", type=float, default=5.0)
    group.add_argument("--sb-max-loop-lag-ms", type=float, default=5.0)
    group.add_argument("--sb-max-cpu-percent", type=float, default=85.0)
    group.add_argument("--sb-progress-s", type=float, default=0.0, help="progress line period")


@dataclass
class _Window:
    start_ns: int = 0
    stop_ns: int = 0


class SurgeState:
    """Everything surgebench keeps in one Locust process."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        opts = environment.parsed_options
        self.opts = opts
        self.is_master = isinstance(environment.runner, MasterRunner)
        self.is_worker = isinstance(environment.runner, WorkerRunner)
        worker_index = int(getattr(environment.runner, "worker_index", 0) or 0)
        slo = Slo(
            ttft_ms=opts.sb_slo_ttft_ms or None,
            tpot_ms=opts.sb_slo_tpot_ms or None,
            e2e_ms=opts.sb_slo_e2e_ms or None,
        )
        self.recorder = Recorder(slo=slo)
        self.prompts = PromptSource(
            prompt_words=opts.sb_prompt_words,
            max_tokens=opts.sb_max_tokens,
            file=Path(opts.sb_prompts) if opts.sb_prompts else None,
            seed=opts.sb_seed * 1000 + worker_index,
        )
        self.window = _Window()
        self.started_at = ""
        self.greenlets: list[Any] = []
        self.workers_reported: set[str] = set()
        self.book: ArrivalBook | None = None
        self.arrivals: Queue | None = None
        self.written: Path | None = None
        self.flushed: set[str] = set()
        self.totals: dict[str, int] = {}
        """Outcomes this process measured (never drained): a worker's own account of its share."""

    # -- users call these ----------------------------------------------------------------------
    def next_intended_ns(self) -> int | None:
        """Closed loop: None at once. Open loop: block until an arrival is due, return it."""
        if self.arrivals is None or self.book is None:
            return None
        intended: int = self.arrivals.get()
        self.book.take(intended, time.time_ns(), intended >= self.recorder.measure_from_ns)
        return intended

    def record(self, record: RequestRecord) -> None:
        self.recorder.record_request(record)
        if record.start_ns >= self.recorder.measure_from_ns:
            self.totals[record.outcome] = self.totals.get(record.outcome, 0) + 1

    # -- lifecycle -----------------------------------------------------------------------------
    def on_test_start(self) -> None:
        now_ns = time.time_ns()
        self.window = _Window(start_ns=now_ns)
        self.started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        # a new test (the web UI can start several) starts from empty measurements
        self.recorder = Recorder(
            slo=self.recorder.slo, phase_starts_ns=phase_starts_ns(phase_plan(self.opts), now_ns)
        )
        self.recorder.measure_from_ns = now_ns + int(self.opts.sb_warmup_s * 1e9)
        self.totals = {}
        self.workers_reported = set()
        self.written = None
        if not self.is_master:
            freeze_heap()
            self.greenlets += [gevent.spawn(self._loop_lag), gevent.spawn(self._cpu)]
            if self.opts.sb_rate > 0:
                self._start_arrivals(now_ns)
        if not self.is_worker:
            self.greenlets.append(gevent.spawn(self._users))
            if self.opts.sb_progress_s > 0:
                self.greenlets.append(gevent.spawn(self._progress))

    def on_test_stop(self) -> None:
        self.window.stop_ns = time.time_ns()
        gevent.killall(self.greenlets, block=False)
        self.greenlets = []

    def _start_arrivals(self, now_ns: int) -> None:
        processes = max(1, self.opts.sb_processes)
        worker_index = int(getattr(self.environment.runner, "worker_index", 0) or 0)
        settings = ArrivalSettings(
            rate_per_s=self.opts.sb_rate / processes,
            kind=self.opts.sb_arrival,
            seed=self.opts.sb_seed * 1000 + worker_index,
        )
        users = int(getattr(self.opts, "num_users", 0) or 1)
        self.book = ArrivalBook(settings, backlog_limit=max(1, users // processes))
        self.arrivals = Queue()
        self.greenlets.append(gevent.spawn(self._dispatch, settings, now_ns))

    def _dispatch(self, settings: ArrivalSettings, start_ns: int) -> None:
        assert self.book is not None and self.arrivals is not None
        for intended in intended_times_ns(settings, start_ns):
            delay_s = (intended - time.time_ns()) / 1e9
            if delay_s > 0:
                gevent.sleep(delay_s)
            counted = intended >= self.recorder.measure_from_ns  # warm-up arrivals are not
            if self.book.offer(self.arrivals.qsize(), counted):
                self.arrivals.put_nowait(intended)

    def _loop_lag(self) -> None:
        """Oversleep of a 10 ms sleeper: how late this process's greenlets get to run."""
        tick_ns = int(LOOP_TICK_S * 1e9)
        while True:
            before = time.perf_counter_ns()
            gevent.sleep(LOOP_TICK_S)
            lag = time.perf_counter_ns() - before - tick_ns
            if time.time_ns() >= self.recorder.measure_from_ns:
                self.recorder.record_loop_lag_ns(max(0, lag))

    def _cpu(self) -> None:
        process = psutil.Process()
        process.cpu_percent(None)
        while True:
            gevent.sleep(CPU_TICK_S)
            percent = process.cpu_percent(None)
            if time.time_ns() >= self.recorder.measure_from_ns:
                self.recorder.record_cpu(percent)

    def _users(self) -> None:
        runner = self.environment.runner
        while True:
            self.recorder.record_users(int(time.time()), int(runner.user_count))
            gevent.sleep(1.0)

    def _progress(self) -> None:
        period = self.opts.sb_progress_s
        while True:
            gevent.sleep(period)
            print(progress_line(self, period), flush=True)

    # -- distribution --------------------------------------------------------------------------
    def drain(self) -> dict[str, Any]:
        if self.book is not None:
            for key, n in self.book.drain().items():
                self.recorder.count_open_loop(key, n)
        return self.recorder.drain()

    def merge(self, client_id: str, data: dict[str, Any]) -> None:
        self.workers_reported.add(client_id)
        self.recorder.merge_dict(data)

    def collect_final_reports(self) -> None:
        """Master, as the test stops: have every worker finish its in-flight requests and send
        its last delta, and wait for them (Locust's own quit waits only 0.5 s, which loses the
        requests that end during the stop timeout)."""
        runner = self.environment.runner
        clients = [c.id for c in runner.clients.all]
        self.flushed = set()
        for client_id in clients:
            runner.send_message(FLUSH_MSG, None, client_id)
        deadline = time.monotonic() + float(self.environment.stop_timeout or 0) + 10.0
        while time.monotonic() < deadline and not self.flushed.issuperset(clients):
            gevent.sleep(0.05)
        missing = set(clients) - self.flushed
        if missing:
            log.warning("no final report from %d worker(s): %s", len(missing), sorted(missing))

    def flush_to_master(self) -> None:
        """Worker: stop the users (in-flight requests may finish within the stop timeout),
        send the stats now, then say so."""
        runner = self.environment.runner
        runner.stop()
        runner._send_stats()  # Locust's stats + our report_to_master delta, in one message
        runner.send_message(FLUSHED_MSG, None)

    # -- the end -------------------------------------------------------------------------------
    def write(self) -> Path | None:
        """Build and write summary.json (master or local runner), once."""
        if self.written is not None or not self.window.start_ns:
            return self.written
        if not self.is_master and self.book is not None:
            for key, n in self.book.drain().items():
                self.recorder.count_open_loop(key, n)
        stop_ns = self.window.stop_ns or time.time_ns()
        measure_from = self.recorder.measure_from_ns
        measured_s = max(0.0, (stop_ns - measure_from) / 1e9)
        opts = self.opts
        config: dict[str, Any] = {}
        if opts.sb_config and Path(opts.sb_config).exists():
            config = json.loads(Path(opts.sb_config).read_text("utf-8"))
        processes = max(1, opts.sb_processes) if self.is_master else 1
        info = RunInfo(
            name=opts.sb_name,
            started_at=self.started_at,
            start_epoch_s=self.window.start_ns / 1e9,
            duration_s=(stop_ns - self.window.start_ns) / 1e9,
            warmup_s=opts.sb_warmup_s,
            target=str(self.environment.host or ""),
            load_model=load_model(opts),
            processes=processes,
            workers_reported=len(self.workers_reported) if self.is_master else 1,
            config=config,
            versions=versions(),
            phases=tuple(phase_plan(opts)),
        )
        guard = GuardSettings(
            max_client_lag_p99_ms=opts.sb_max_client_lag_ms,
            max_loop_lag_p99_ms=opts.sb_max_loop_lag_ms,
            max_cpu_percent=opts.sb_max_cpu_percent,
        )
        summary = build_summary(self.recorder, info, measured_s=measured_s, guard=guard)
        if not summary.valid:
            for reason in summary.invalid_reasons:
                log.warning("INVALID RUN: %s", reason)
        if opts.sb_out:
            self.written = write_summary(Path(opts.sb_out), summary)
            log.info("surgebench summary written to %s", self.written)
        else:
            self.written = Path()
        return self.written

    def write_worker_totals(self) -> None:
        """``workers/<pid>.json``: this worker's own outcome counts, to check the merge."""
        folder = Path(self.opts.sb_out) / "workers"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{os.getpid()}.json"
        path.write_text(json.dumps({"outcomes": self.totals}) + "\n", "utf-8")


def freeze_heap() -> None:
    """Move everything alive now out of the cyclic GC's reach (`gc.freeze`).

    Measured here: a full collection of a Locust process's heap takes 70-110 ms, and every such
    pause is added to the TTFT/ITL of each stream in flight (client lag p99 30-80 ms at only 50
    streams). After the freeze a full collection scans only objects made during the test.
    """
    gc.collect()
    gc.freeze()


def phase_plan(opts: Any) -> list[PhaseSpan]:
    """The phases of this run's load (`loadtests.phases`), the same in every process."""
    return plan_phases(
        os.environ.get("SURGEBENCH_SHAPE", ""),
        users=int(getattr(opts, "num_users", 0) or 0),
        rate_per_s=opts.sb_rate,
        arrival=opts.sb_arrival,
    )


def load_model(opts: Any) -> str:
    if opts.sb_rate > 0:
        return f"open:{opts.sb_arrival}:{opts.sb_rate:g}/s"
    shape = os.environ.get("SURGEBENCH_SHAPE", "")
    return f"shape:{shape.partition('|')[0]}" if shape else "closed"


def versions() -> dict[str, str]:
    import locust

    from surgebench import __version__ as surge_version

    return {
        "surgebench": str(surge_version),
        "python": sys.version.split()[0],
        "locust": str(locust.__version__),
    }


def progress_line(state: SurgeState, period_s: float) -> str:
    """The last `period_s` seconds (`loadtests.progress`); workers report every 3 s."""
    from loadtests.progress import progress_line as line

    return line(
        state.recorder.seconds,
        now_s=int(time.time()) - (3 if state.is_master else 0),
        window_s=period_s,
        elapsed_s=(time.time_ns() - state.window.start_ns) / 1e9,
        users=int(state.environment.runner.user_count),
    )


def register(events: Any) -> None:
    """Attach surgebench to a Locust ``events`` object (called once by the locustfile)."""
    events.init_command_line_parser.add_listener(add_arguments)
    events.init.add_listener(_on_init)


def _on_init(environment: Any, **_: Any) -> None:
    if environment.parsed_options is None or not hasattr(environment.parsed_options, "sb_out"):
        return  # library use without our options
    state = SurgeState(environment)
    environment.surgebench = state
    for cls in environment.user_classes:
        cls.network_timeout = environment.parsed_options.sb_timeout_s
        cls.connection_timeout = min(10.0, environment.parsed_options.sb_timeout_s)

    def start(**_: Any) -> None:
        state.on_test_start()

    def stop(**_: Any) -> None:
        state.on_test_stop()

    def report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        data[REPORT_KEY] = state.drain()

    def merge(client_id: str, data: dict[str, Any], **_: Any) -> None:
        if REPORT_KEY in data:
            state.merge(client_id, data[REPORT_KEY])

    def cpu_warning(**_: Any) -> None:
        state.recorder.cpu_warnings += 1

    def quitting(**_: Any) -> None:
        if not state.is_worker:
            state.write()
        elif state.opts.sb_out:
            state.write_worker_totals()

    if state.is_master:
        environment.runner.register_message(
            FLUSHED_MSG, lambda msg, **_: state.flushed.add(msg.node_id)
        )
    if state.is_worker:
        environment.runner.register_message(
            FLUSH_MSG, lambda **_: state.flush_to_master(), concurrent=True
        )

    def stopping(**_: Any) -> None:
        if state.is_master:
            state.collect_final_reports()

    def spawned(**_: Any) -> None:
        if not state.is_master:
            gc.freeze()  # users and connections are long-lived too (no collection: no pause)

    ev = environment.events
    ev.spawning_complete.add_listener(spawned)
    ev.test_stopping.add_listener(stopping)
    ev.test_start.add_listener(start)
    ev.test_stop.add_listener(stop)
    ev.report_to_master.add_listener(report)
    ev.worker_report.add_listener(merge)
    ev.cpu_warning.add_listener(cpu_warning)
    ev.quitting.add_listener(quitting)
