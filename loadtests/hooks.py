"""Locust event wiring: the run's settings, recorders, samplers, worker -> master merge, summary.

Imported only by the locustfile (it imports gevent and Locust). Every process rebuilds the run's
`RunSettings` from the ``config.json`` named by ``--sb-config`` (the one option; a worker takes
the master's document from the spawn message, `loadtests.distributed`) and keeps one
`SurgeState` on ``environment.surgebench``. Workers (and a local runner) record requests, sample
their own CPU and event-loop lag, and (workers) send deltas through ``report_to_master``; the
master (or the local runner) merges them and writes ``summary.json`` when it quits, the point
at which the workers' final reports have arrived (docs/loadtests.md).
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import psutil  # type: ignore[import-untyped]
from gevent.queue import Queue
from locust.exception import StopUser
from locust.runners import STATE_CLEANUP, STATE_STOPPING, MasterRunner, WorkerRunner

from loadtests import outcomes as oc
from loadtests.arrivals import MAX_CATCH_UP_S, ArrivalBook, ArrivalSettings, intended_times_ns
from loadtests.distributed import (
    CLOCK_REPLY,
    CLOCK_REQUEST,
    CLOCK_TRIES,
    CLOCK_WAIT_S,
    DOCUMENT_OPTION,
    MASTER_READY,
    DistributedError,
    adopt_master_document,
    master_document,
    measured_offset_ns,
    skew_ns,
    to_master_clock,
)
from loadtests.fast_reader import reader_record
from loadtests.health import REPORT_KEY as HEALTH_KEY
from loadtests.health import HealthSampler, merge_points
from loadtests.phases import phase_plan, phase_starts_ns
from loadtests.prompts import PromptSource
from loadtests.recorder import READ_LAG, Recorder, RequestRecord, Slo
from loadtests.settings import DEFAULTS, RunSettings, SettingsError, read_config_document
from loadtests.summary import Window, summarize
from loadtests.workload import REPORT_KEY as WORKLOAD_KEY
from loadtests.workload import Workload
from reports.results import write_summary

log = logging.getLogger("surgebench")

REPORT_KEY = "surgebench"
FLUSH_MSG = "surgebench_flush"
FLUSHED_MSG = "surgebench_flushed"
LOOP_TICK_S = 0.01
CPU_TICK_S = 1.0


def add_arguments(parser: Any) -> None:
    """Our one Locust option: the run's ``config.json``, from which every process rebuilds the
    run's `RunSettings` (``surgebench run`` writes it; without it: defaults, and summary.json
    goes into results/locust-<time>/)."""
    group = parser.add_argument_group("surgebench")
    group.add_argument("--sb-config", default="", help="the run's config.json (surgebench run)")
    # set by the master, carried to the workers in Locust's spawn messages (loadtests.distributed)
    group.add_argument("--sb-config-document", default="", help=argparse.SUPPRESS)


def load_settings(config_path: str, host: str) -> tuple[RunSettings, dict[str, Any], Path | None]:
    """(settings, the config.json document, the run folder) for this Locust process."""
    if not config_path:
        return replace(DEFAULTS, host=host), {}, None
    path = Path(config_path)
    document = read_config_document(path)
    settings = RunSettings.from_dict(document)
    return replace(settings, host=settings.host or host), document, path.parent


@dataclass
class _Window:
    start_ns: int = 0
    stop_ns: int = 0


class Samplers:
    """Greenlets that sample this process while a test runs: event-loop lag and CPU (processes
    that run users), the user count and the progress line (master or the only process)."""

    def __init__(self, state: SurgeState) -> None:
        self.state = state
        self.greenlets: list[Any] = []

    def start(self) -> None:
        state = self.state
        if not state.is_master:
            self.greenlets += [gevent.spawn(self._loop_lag), gevent.spawn(self._cpu)]
            self.greenlets.append(gevent.spawn(self._health))
        if not state.is_worker:
            self.greenlets.append(gevent.spawn(self._users))
            if state.settings.progress_s > 0:
                self.greenlets.append(gevent.spawn(self._progress))

    def add(self, greenlet: Any) -> None:
        self.greenlets.append(greenlet)

    def stop(self) -> None:
        gevent.killall(self.greenlets, block=False)
        self.greenlets = []

    def _loop_lag(self) -> None:
        """Oversleep of a 10 ms sleeper: how late this process's greenlets get to run."""
        tick_ns = int(LOOP_TICK_S * 1e9)
        while True:
            before = time.perf_counter_ns()
            gevent.sleep(LOOP_TICK_S)
            lag = time.perf_counter_ns() - before - tick_ns
            recorder = self.state.recorder
            self.state.health.loop_lag(max(0, lag) / 1e6)
            if time.time_ns() >= recorder.measure_from_ns:
                recorder.record_loop_lag_ns(max(0, lag))

    def _cpu(self) -> None:
        process = psutil.Process()
        process.cpu_percent(None)
        while True:
            gevent.sleep(CPU_TICK_S)
            percent = process.cpu_percent(None)
            recorder = self.state.recorder
            if time.time_ns() >= recorder.measure_from_ns:
                recorder.record_cpu(percent)

    def _health(self) -> None:
        """Once a second, off the per-token path: the generator's CPU, lag and run-queue wait,
        and the machine's contention (`loadtests.health`)."""
        health = self.state.health
        before = time.perf_counter()
        while True:
            gevent.sleep(1.0)
            now = time.perf_counter()
            hists = self.state.recorder.hists
            health.sample(
                int(time.time()) - 1, now - before, hists.get("client_lag_ms"), hists.get(READ_LAG)
            )
            before = now

    def _users(self) -> None:
        runner = self.state.environment.runner
        while True:
            self.state.recorder.record_users(int(time.time()), int(runner.user_count))
            gevent.sleep(1.0)

    def _progress(self) -> None:
        period = self.state.settings.progress_s
        while True:
            gevent.sleep(period)
            print(progress_line(self.state, period), flush=True)


class Distribution:
    """Worker -> master: deltas through ``report_to_master``, merged on the master, and the
    final flush at the stop so no request that ends in the stop timeout is lost."""

    def __init__(self, state: SurgeState) -> None:
        self.state = state
        self.workers_reported: set[str] = set()
        self.flushed: set[str] = set()

    def reset(self) -> None:
        self.workers_reported = set()

    def drain(self) -> dict[str, Any]:
        """Worker: this process's measurements since the last report (then forgotten here)."""
        self.state.drain_arrivals()
        report = {
            **self.state.recorder.drain(),
            WORKLOAD_KEY: self.state.workload.drain(),
            HEALTH_KEY: self.state.health.drain(),
        }
        return to_master_clock(report, self.state.clock_offset_ns, HEALTH_KEY)

    def merge(self, client_id: str, data: dict[str, Any]) -> None:
        self.workers_reported.add(client_id)
        self.state.recorder.merge_dict(data)
        self.state.workload.merge(data.get(WORKLOAD_KEY))
        merge_points(self.state.health.points, data.get(HEALTH_KEY))

    def collect_final_reports(self) -> None:
        """Master, as the test stops: have every worker finish its in-flight requests and send
        its last delta, and wait for them (Locust's own quit waits only 0.5 s, which loses the
        requests that end during the stop timeout)."""
        environment = self.state.environment
        runner = environment.runner
        clients = [c.id for c in runner.clients.all]
        self.flushed = set()
        for client_id in clients:
            runner.send_message(FLUSH_MSG, None, client_id)
        deadline = time.monotonic() + float(environment.stop_timeout or 0) + 10.0
        while time.monotonic() < deadline and not self.flushed.issuperset(clients):
            gevent.sleep(0.05)
        missing = set(clients) - self.flushed
        if missing:
            log.warning("no final report from %d worker(s): %s", len(missing), sorted(missing))
        # only a worker that flushed at the stop sent all it measured; one missing, or gone
        # before the stop (a worker that quit after an early empty report), leaves the counts
        # incomplete, and the run says so
        self.workers_reported &= self.flushed

    def flush_to_master(self) -> None:
        """Worker: stop the users (in-flight requests may finish within the stop timeout),
        send the stats now, then say so."""
        runner = self.state.environment.runner
        runner.stop()
        runner._send_stats()  # Locust's stats + our report_to_master delta, in one message
        runner.send_message(FLUSHED_MSG, None)


class ClockCheck:
    """Worker: this host's offset from the master's clock, asked once as it connects
    (`loadtests.distributed`); the answer sets ``state.clock_offset_ns``."""

    def __init__(self, state: SurgeState) -> None:
        self.state = state
        self.answered = gevent.event.Event()

    def ask(self) -> None:
        runner = self.state.environment.runner
        for _ in range(CLOCK_TRIES):  # the master may not listen for it yet: ask again
            runner.send_message(CLOCK_REQUEST, {"sent_ns": time.time_ns()})
            if self.answered.wait(CLOCK_WAIT_S):
                return

    def on_reply(self, data: dict[str, Any]) -> None:
        if self.answered.is_set():
            return
        received_ns = time.time_ns()
        sent_ns = int(data["sent_ns"])
        offset = measured_offset_ns(sent_ns, int(data["master_ns"]), received_ns)
        self.state.clock_offset_ns = skew_ns(offset, received_ns - sent_ns)
        self.answered.set()
        if offset is None:
            return
        log.info(
            "[surgebench] worker: clock offset from the master's %+.1f ms (round trip %.1f ms)",
            offset / 1e6,
            (received_ns - sent_ns) / 1e6,
        )
        if self.state.clock_offset_ns:
            log.warning(
                "[surgebench] this worker's clock is %.1f s off the master's: its phases and "
                "per-second series are moved onto the master's clock",
                offset / 1e9,
            )


class SurgeState:
    """What surgebench keeps in one Locust process: the run's settings, the recorder, the
    prompts and arrivals the users draw from; samplers, distribution and the summary are
    separate jobs (`Samplers`, `Distribution`, `write_summary_once`)."""

    def __init__(
        self,
        environment: Any,
        settings: RunSettings,
        config: dict[str, Any] | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.environment = environment
        self.settings = settings
        self.config = dict(config or {})
        self.run_dir = run_dir
        self.is_master = isinstance(environment.runner, MasterRunner)
        self.is_worker = isinstance(environment.runner, WorkerRunner)
        self.worker_index = int(getattr(environment.runner, "worker_index", 0) or 0)
        self.use_settings(settings, config)
        self.clock_offset_ns = 0
        """A worker's offset from the master's clock (`loadtests.distributed`)."""
        self.users_peak = 0
        self.window = _Window()
        self.started_at = ""
        self.book: ArrivalBook | None = None
        self.arrivals: Queue | None = None
        self.dispatcher: Any = None
        self.run_time_s = 0.0
        self.run_timer: Any = None
        """Headless runs: how long the test runs from its start (`RunClock`), else 0."""
        self.stopping = False
        """The test is stopping: no new request, no new session turn (`on_test_stopping`)."""
        self.written: Path | None = None
        self.totals: dict[str, int] = {}
        """Outcomes this process measured (never drained): a worker's own account of its share."""
        self.health = new_health_sampler()
        self.samplers = Samplers(self)
        self.distribution = Distribution(self)
        self.workload = Workload(settings, self.worker_index)

    def use_settings(self, settings: RunSettings, config: dict[str, Any] | None) -> None:
        """Take the run's settings: at init, and on a worker again from the master's spawn
        message (`adopt_master_settings`)."""
        self.settings = settings
        self.config = dict(config or {})
        self.recorder = Recorder(slo=slo_of(settings))
        self.prompts = PromptSource(
            prompt_words=settings.prompt_words,
            max_tokens=settings.max_tokens,
            file=Path(settings.prompts) if settings.prompts else None,
            seed=settings.seed * 1000 + self.worker_index,
        )
        for cls in self.environment.user_classes:
            cls.network_timeout = settings.request_timeout_s
            cls.connection_timeout = min(10.0, settings.request_timeout_s)

    def adopt_master_settings(self) -> None:
        """Worker: the master's configuration, from the spawn message Locust just applied
        (`loadtests.distributed`); `DistributedError` when this worker cannot run it."""
        text = str(getattr(self.environment.parsed_options, DOCUMENT_OPTION, "") or "")
        if not text:
            return  # a master without surgebench's hooks: this worker keeps its own settings
        from surgebench import __version__

        adopted = adopt_master_document(text, str(__version__))
        try:
            self.use_settings(adopted.settings, adopted.document)
        except (OSError, ValueError) as exc:  # e.g. --prompts names a file this host lacks
            raise DistributedError(f"cannot use the master's configuration here: {exc}") from None

    # -- users call these ----------------------------------------------------------------------
    def next_intended_ns(self) -> int | None:
        """Closed loop: None at once. Open loop: block until an arrival is due, return it."""
        if self.arrivals is None or self.book is None:
            return None
        intended: int | None = self.arrivals.get()
        if intended is None:  # the test is stopping: wake the next waiting user too
            self.arrivals.put_nowait(None)
            raise StopUser()
        self.book.take(intended, time.time_ns(), intended >= self.recorder.measure_from_ns)
        return intended

    def record(self, record: RequestRecord) -> None:
        if record.outcome == oc.UNFINISHED:
            self.recorder.record_unfinished(record)
        else:
            self.recorder.record_request(record)
        if record.start_ns >= self.recorder.measure_from_ns:
            self.totals[record.outcome] = self.totals.get(record.outcome, 0) + 1

    # -- lifecycle -----------------------------------------------------------------------------
    def _origin_ns(self, now_ns: int) -> int:
        """When the load's schedule started: the master's test start (it runs the shape), sent
        to the workers as a parsed option inside Locust's spawn message, which a worker applies
        before its own test_start; a worker starts late by the message's delay, so its
        warm-up, arrivals and trace rows are anchored on the master's start too."""
        options = self.environment.parsed_options
        if self.is_master:
            options.sb_origin_ns = now_ns
        elif self.is_worker:
            master_ns = int(getattr(options, "sb_origin_ns", 0) or 0)
            return master_ns + self.clock_offset_ns if master_ns else now_ns
        return now_ns

    def on_test_start(self) -> None:
        if self.is_worker:
            self.adopt_master_settings()
        now_ns = time.time_ns()
        origin_ns = self._origin_ns(now_ns)
        self.window = _Window(start_ns=now_ns)
        self.started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        # a new test (the web UI can start several) starts from empty measurements
        self.recorder = Recorder(
            slo=self.recorder.slo,
            phase_starts_ns=phase_starts_ns(phase_plan(self.settings), origin_ns),
        )
        self.recorder.measure_from_ns = origin_ns + int(self.settings.warmup_s * 1e9)
        self.totals = {}
        self.stopping = False
        self.health = new_health_sampler()
        self.distribution.reset()
        self.written = None
        self.workload = Workload(self.settings, self.worker_index)
        # not a sampler: `on_test_stop` (which it causes) kills those. A load shape ends the
        # test itself (Locust ignores -t then): a clock of ours would stop it a second time.
        if self.run_time_s > 0 and getattr(self.environment, "shape_class", None) is None:
            self.run_timer = gevent.spawn(run_clock, self, now_ns)
        warm_stop_path()
        if not self.is_master:
            freeze_heap()
            if self.settings.rate > 0:
                self._start_arrivals(origin_ns)
            users = int(getattr(self.environment.parsed_options, "num_users", 0) or 1)
            self.workload.start(origin_ns, users, self.samplers.add, self.recorder.measure_from_ns)
            self.book = self.workload.book or self.book  # trace rows count as open-loop arrivals
        self.samplers.start()

    def on_test_stopping(self) -> None:
        """The stop began (before Locust stops the users and waits the stop timeout): no arrival
        is sent from now on. Users waiting for one stop; users in a request finish it within the
        stop timeout, and those still in flight after it are counted ``unfinished``."""
        self.stopping = True
        if self.dispatcher is not None:
            self.dispatcher.kill(block=False)
        if self.arrivals is not None:
            self.arrivals.put_nowait(None)
        self.workload.stop()

    def on_test_stop(self) -> None:
        self.window.stop_ns = time.time_ns()
        self.samplers.stop()
        if self.run_timer is not None and self.run_timer is not gevent.getcurrent():
            self.run_timer.kill(block=False)  # stopped otherwise (a shape, a signal)

    def _start_arrivals(self, now_ns: int) -> None:
        processes = max(1, self.settings.processes)
        settings = ArrivalSettings(
            rate_per_s=self.settings.rate / processes,
            kind=self.settings.arrival,
            seed=self.settings.seed * 1000 + self.worker_index,
        )
        users = int(getattr(self.environment.parsed_options, "num_users", 0) or 1)
        self.book = ArrivalBook(settings, backlog_limit=max(1, users // processes))
        self.arrivals = Queue()
        self.dispatcher = gevent.spawn(self._dispatch, settings, now_ns)
        self.samplers.add(self.dispatcher)

    def _dispatch(self, settings: ArrivalSettings, start_ns: int) -> None:
        assert self.book is not None and self.arrivals is not None
        catch_up_from_ns = time.time_ns() - int(MAX_CATCH_UP_S * 1e9)
        for intended in intended_times_ns(settings, start_ns):
            if intended < catch_up_from_ns:
                continue  # due long before this worker joined (`MAX_CATCH_UP_S`)
            delay_s = (intended - time.time_ns()) / 1e9
            if delay_s > 0:
                gevent.sleep(delay_s)
            counted = intended >= self.recorder.measure_from_ns  # warm-up arrivals are not
            if self.book.offer(self.arrivals.qsize(), counted):
                self.arrivals.put_nowait(intended)

    def drain_arrivals(self) -> None:
        """Move the open-loop arrival counts into the recorder."""
        if self.book is not None:
            for key, n in self.book.drain().items():
                self.recorder.count_open_loop(key, n)


STOP_POLL_S = 0.05
"""`run_clock`: how often it looks whether a stop under way has ended."""


def run_clock(state: SurgeState, start_ns: int) -> None:
    """Quit the test ``run_time_s`` after its start, by the wall clock (Locust's ``-t`` timer,
    replaced by this one in `_on_init`, starts before the test does and on the event loop's
    cached time, which start-up leaves stale: a 4 s run lasted 2.4 s under load)."""
    deadline_ns = start_ns + int(state.run_time_s * 1e9)
    while (left_s := (deadline_ns - time.time_ns()) / 1e9) > 0:
        gevent.sleep(min(left_s, 0.5))
    runner = state.environment.runner
    # A stop already under way (a load shape's end, a signal) is let finish first: a second
    # `quit()` now would stop every user again, and Locust raises for a user already stopping
    # ("Tried to stop User in an unexpected state: stopping", a traceback per user, seen at the
    # end of `make run`'s spike shape). Bounded: a stop ends within the stop timeout.
    while runner.state in (STATE_CLEANUP, STATE_STOPPING):
        gevent.sleep(STOP_POLL_S)
    log.info("run time of %gs reached (from the test's start), stopping", state.run_time_s)
    runner.quit()


def new_health_sampler() -> HealthSampler:
    process = psutil.Process()
    process.cpu_percent(None)
    return HealthSampler(cpu_percent=lambda: float(process.cpu_percent(None)))


def slo_of(settings: RunSettings) -> Slo:
    return Slo(
        ttft_ms=settings.slo_ttft_ms or None,
        tpot_ms=settings.slo_tpot_ms or None,
        e2e_ms=settings.slo_e2e_ms or None,
    )


def write_summary_once(state: SurgeState) -> Path | None:
    """Build and write summary.json (master or local runner), once."""
    if state.written is not None or not state.window.start_ns:
        return state.written
    if not state.is_master:
        state.drain_arrivals()
    window = Window(
        start_ns=state.window.start_ns,
        stop_ns=state.window.stop_ns or time.time_ns(),
        started_at=state.started_at,
    )
    summary = summarize(
        state.recorder,
        state.settings,
        window,
        distributed=state.is_master,
        workers_reported=len(state.distribution.workers_reported),
        config=state.config,
        versions=versions(),
        health=state.health.points,
    )
    summary.trace, summary.sessions = (state.workload.blocks()[k] for k in ("trace", "sessions"))
    summary.config["generator"] = reader_record(
        str(state.environment.host or ""), state.environment.user_classes
    )
    if not summary.valid:
        for reason in summary.invalid_reasons:
            log.warning("INVALID RUN: %s", reason)
    # a plain `locust -f` run (no --sb-config) writes into results/locust-<UTC start time>/
    stamp = state.started_at[:19].replace(":", "")
    out = state.run_dir if state.run_dir is not None else Path("results") / f"locust-{stamp}Z"
    state.written = write_summary(out, summary)
    log.info("surgebench summary written to %s", state.written)
    return state.written


def write_worker_totals(state: SurgeState) -> None:
    """``workers/<pid>.json``: this worker's own outcome counts, to check the merge."""
    if state.run_dir is None:
        return
    folder = state.run_dir / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{os.getpid()}.json"
    path.write_text(json.dumps({"outcomes": state.totals}) + "\n", "utf-8")


def worker_totals_line(state: SurgeState) -> str:
    """A worker's own account of its share, one JSON line on its output."""
    body = {"users": state.users_peak, "outcomes": state.totals}
    return f"[surgebench] worker totals: {json.dumps(body, sort_keys=True)}"


def refuse_master(environment: Any, reason: str) -> None:
    """Worker: cannot run the master's configuration; say why and quit (exit 2) before any
    user starts (the quit greenlet runs ahead of Locust's spawning greenlet)."""
    log.error("[surgebench] worker: %s", reason)
    environment.process_exit_code = 2
    gevent.spawn(environment.runner.quit)


GC_GEN0_THRESHOLD = 50_000
"""Young-generation threshold of the cyclic GC during a test (CPython's default: 700)."""


def warm_stop_path() -> None:
    """Make Locust's stop cheap before anything is measured: ``Runner.stop()`` logs its caller
    through ``inspect.stack()``, whose first call in a process scans the path of every loaded
    module (``inspect.getmodule``). Measured here at 500 streams: that first call blocked the
    event loop for ~45 ms at the stop, while the streams still in flight were read (the run's
    last second had client lag p99 57 ms against 19-23 ms before it). Called once at the test's
    start, inspect caches the scan and the stop's own call takes ~0.3 ms."""
    inspect.stack()


def freeze_heap() -> None:
    """Move everything alive now out of the cyclic GC's reach (`gc.freeze`), and collect the
    young generation rarely (`GC_GEN0_THRESHOLD`).

    Measured here: a full collection of a Locust process's heap takes 70-110 ms, and every such
    pause is added to the TTFT/ITL of each stream in flight (client lag p99 30-80 ms at only 50
    streams). After the freeze a full collection scans only objects made during the test. At
    the default threshold of 700 a young collection ran ~20 times a second at 500 streams, each
    scanning the live objects of every stream in flight (~0.3 ms; with the older generations,
    ~2.5 % of the process's CPU); request state is freed by reference counting, so the young
    generation rarely reaches 50,000 during a test.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


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
    options = environment.parsed_options
    if options is None or not hasattr(options, "sb_config"):
        return  # library use without our options
    try:
        settings, document, run_dir = load_settings(options.sb_config, str(environment.host or ""))
    except (SettingsError, OSError, ValueError) as exc:
        log.error("surgebench: cannot read the run configuration: %s", exc)
        raise SystemExit(2) from None
    state = SurgeState(environment, settings, document, run_dir)
    environment.surgebench = state
    run_time = getattr(options, "run_time", None)
    if run_time and getattr(options, "headless", False) and not state.is_worker:
        options.run_time = None  # Locust's timer would start it; `run_clock` measures from start
        state.run_time_s = float(run_time)
    if state.is_master:  # travels to the workers in every spawn message
        setattr(
            options, DOCUMENT_OPTION, master_document(document, settings, versions()["surgebench"])
        )

    def start(**_: Any) -> None:
        try:
            state.on_test_start()
        except DistributedError as exc:
            refuse_master(environment, str(exc))

    def stop(**_: Any) -> None:
        state.on_test_stop()

    def report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        data[REPORT_KEY] = state.distribution.drain()

    def merge(client_id: str, data: dict[str, Any], **_: Any) -> None:
        if REPORT_KEY in data:
            state.distribution.merge(client_id, data[REPORT_KEY])

    def cpu_warning(**_: Any) -> None:
        state.recorder.cpu_warnings += 1

    def quitting(**_: Any) -> None:
        if not state.is_worker:
            write_summary_once(state)
        else:
            write_worker_totals(state)
            if state.run_dir is None and state.window.start_ns:  # no files: it says its share
                print(worker_totals_line(state), flush=True)

    if state.is_master:
        environment.runner.register_message(
            FLUSHED_MSG, lambda msg, **_: state.distribution.flushed.add(msg.node_id)
        )
    if state.is_worker:
        environment.runner.register_message(
            FLUSH_MSG, lambda **_: state.distribution.flush_to_master(), concurrent=True
        )
        clock = ClockCheck(state)
        environment.runner.register_message(CLOCK_REPLY, lambda msg, **_: clock.on_reply(msg.data))
        gevent.spawn(clock.ask)
    if state.is_master:
        environment.runner.register_message(
            CLOCK_REQUEST,
            lambda msg, **_: environment.runner.send_message(
                CLOCK_REPLY,
                {"sent_ns": msg.data["sent_ns"], "master_ns": time.time_ns()},
                client_id=msg.node_id,
            ),
        )
    if state.is_master and state.settings.master:  # (not a local --processes run)
        # it listens and has read the run's files (e.g. --prompts): remote workers may come
        print(f"{MASTER_READY} (expecting {state.settings.expect_workers})", flush=True)

    def stopping(**_: Any) -> None:
        state.on_test_stopping()
        if state.is_master:
            state.distribution.collect_final_reports()

    def spawned(**_: Any) -> None:
        state.users_peak = max(state.users_peak, int(environment.runner.user_count))
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
