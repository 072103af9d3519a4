"""Run one load test end to end: servers up, Locust headless, servers down, results written.

Locust-free: Locust runs as a subprocess (``python -m locust -f loadtests/locustfile.py``), so
this process never gets gevent's monkey-patching. Its progress lines and validity warnings are
echoed; everything else it prints goes to ``locust.log`` in the run folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from loadtests.effective import describe, expect, fetch_config
from loadtests.schedules import parse_schedule
from loadtests.scrape import given_targets, local_targets, scraping
from loadtests.settings import RunSettings, config_document
from reports.results import (
    CONFIG_FILE,
    Summary,
    new_run_dir,
    read_summary,
    write_config,
    write_summary,
)
from surgebench.interrupts import wait_child
from surgebench.options import is_loopback
from surgebench.process import (
    ServerProcess,
    ServerStartError,
    child_popen_options,
    surgebench_argv,
)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SHAPE_LOCUSTFILE = Path(__file__).with_name("shape_locustfile.py")
ECHO_MARKERS = ("[surgebench]", "INVALID RUN", "Traceback", "/ERROR/", "/CRITICAL/")


class RunError(RuntimeError):
    """The run could not be carried out; ``exit_code`` 2 means bad settings (e.g. a bad flag)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunResult:
    run_dir: Path
    summary: Summary
    locust_exit_code: int
    interrupted: bool = False


def locust_argv(settings: RunSettings, run_dir: Path) -> list[str]:
    """The Locust command line: Locust's own options, and the run's ``config.json`` (the one
    surgebench option; every Locust process rebuilds `RunSettings` from it)."""
    s = settings
    files = str(LOCUSTFILE) + (f",{SHAPE_LOCUSTFILE}" if s.shape else "")
    argv = [
        sys.executable, "-m", "locust", "-f", files, s.user_class,
        "--headless", "--only-summary",
        "-u", str(s.users), "-r", f"{s.effective_spawn_rate:g}",
        "-t", f"{s.duration_s:g}s", "-H", s.host,
        "--csv", str(run_dir / "locust"), "--html", str(run_dir / "locust.html"),
        "--stop-timeout", f"{s.stop_timeout_s:g}", "--exit-code-on-error", "0",
        "--sb-config", str(run_dir / CONFIG_FILE),
    ]  # fmt: skip
    if s.master:  # only the master here; `surgebench worker` processes run the users
        argv += ["--master", "--expect-workers", str(s.expect_workers)]
        argv += ["--expect-workers-max-wait", f"{s.expect_workers_timeout_s:g}"]
        argv += ["--master-bind-host", s.master_bind_host, "--master-bind-port", str(s.master_port)]
    elif s.processes > 1:
        # Locust's master binds *:5557 by default: a fixed port collides with any other run and
        # listens on every interface. Bind loopback on a port the kernel picks instead.
        port = str(free_loopback_port())
        argv += ["--processes", str(s.processes), "--master-bind-host", "127.0.0.1"]
        argv += ["--master-bind-port", port, "--master-host", "127.0.0.1", "--master-port", port]
    return argv


def free_loopback_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now. Locust's master binds it itself (zmq takes no socket), so
    another process could take it first; the window is a few milliseconds."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


READY_RE = re.compile(r"reported as ready\. (\d+) workers connected")
GAVE_UP = "Gave up waiting for workers to connect"
MISSING = "failed to send heartbeat, setting state to missing"


class MasterWatch:
    """``--master``: turns the Locust master's worker lines into ours and remembers how many
    workers connected (for the line that says why a run that timed out did not start)."""

    def __init__(self, settings: RunSettings) -> None:
        self.expected = settings.expect_workers
        self.connected = 0
        self.gave_up = False

    def line(self, text: str) -> str | None:
        """What to print for one line of Locust's output (None: nothing)."""
        if match := READY_RE.search(text):
            self.connected = int(match.group(1))
            return f"master: {self.connected} of {self.expected} workers connected"
        if GAVE_UP in text:
            self.gave_up = True
        if MISSING in text:  # a worker that stopped answering: its users are gone
            return f"master: {text.split(': ', 1)[-1].strip()}"
        return None


def master_announcement(settings: RunSettings) -> list[str]:
    """What a ``--master`` run prints before Locust starts: where workers connect, and a warning
    when that is beyond this machine."""
    s = settings
    lines = []
    if not is_loopback(s.master_bind_host):
        lines.append(
            f"warning: the Locust master listens on non-loopback address {s.master_bind_host}; "
            "anyone who can reach port "
            f"{s.master_port} can join as a worker and receive the run's configuration"
        )
    lines.append(
        f"master: workers connect to {s.master_bind_host}:{s.master_port}; waiting up to "
        f"{s.expect_workers_timeout_s:g}s for {s.expect_workers} workers: on each worker host "
        f"run `surgebench worker --master-host HOST --master-port {s.master_port}`"
    )
    return lines


def locust_env() -> dict[str, str]:
    """The Locust process's environment: ours, unbuffered, with the repository importable."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


@dataclass
class Servers:
    """Where Locust sends load, and what the servers said they run with."""

    host: str
    effective: dict[str, dict[str, Any] | None]
    urls: dict[str, str] = field(default_factory=dict)
    """Base URLs of the servers this run started (``upstream``, ``service``): scraped."""


@contextlib.contextmanager
def servers(settings: RunSettings, run_dir: Path, say: Callable[[str], None]) -> Iterator[Servers]:
    """Start what the settings need, ask each server for its effective configuration (``GET
    /config``), print it, and yield where Locust should send load."""
    effective: dict[str, dict[str, Any] | None] = {"mock": None, "service": None}
    if settings.target:
        say(f"target: {settings.target} (no servers started)")
        reported = fetch_config(settings.target)
        if reported.component is not None:
            effective[reported.component] = reported.settings
        say(describe(reported.component or "target", reported))
        yield Servers(settings.target, effective)
        return
    stack = contextlib.ExitStack()
    with stack:
        mock = stack.enter_context(
            _start("mock", ["--port", "0", "--stamp", *settings.mock_args], run_dir)
        )
        say(f"mock LLM: {mock.url}  ({' '.join(settings.mock_args)})")
        reported = expect("mock", fetch_config(mock.url))
        effective["mock"] = reported.settings
        say(describe("mock", reported, settings.mock_args))
        if settings.user == "direct":
            yield Servers(f"{mock.url}/v1", effective, {"upstream": mock.url})
            return
        service_argv = [
            "--port", "0", "--upstream-url", f"{mock.url}/v1", "--stamp", *settings.service_args,
        ]  # fmt: skip
        service = stack.enter_context(_start("serve", service_argv, run_dir))
        say(f"service: {service.url}  ({' '.join(settings.service_args) or 'its defaults'})")
        reported = expect("service", fetch_config(service.url))
        effective["service"] = reported.settings
        say(describe("service", reported, settings.service_args))
        yield Servers(service.url, effective, {"upstream": mock.url, "service": service.url})


def _start(command: str, args: list[str], run_dir: Path) -> ServerProcess:
    name = "mock" if command == "mock" else "service"
    try:
        return ServerProcess(surgebench_argv(command, *args), log_path=run_dir / f"{name}.log")
    except ServerStartError as exc:
        refusal = passthrough_refusal(command, exc) if exc.returncode == 2 else None
        if refusal is not None:
            raise RunError(refusal, 2) from None
        raise RunError(f"the {name} did not start: {exc}", 1) from None


_SERVER_ERROR = re.compile(r"surgebench (mock|serve): (.+)")
_SERVER_FLAG = re.compile(r"--(?!-)([\w-]+)")


def passthrough_refusal(command: str, exc: ServerStartError) -> str | None:
    """A server that refused the flags it was given (exit 2, one line ``surgebench mock: --X:
    ...``) as one line in `surgebench run`'s own terms: its flags as the ``--mock-X`` /
    ``--service-X`` the user typed. None when its output holds no such line."""
    lines = [m for line in exc.output.splitlines() if (m := _SERVER_ERROR.fullmatch(line.strip()))]
    if not lines:
        return None
    prefix = "--mock-" if command == "mock" else "--service-"
    hint = f" (see surgebench {command} --help)"
    text = lines[-1].group(2)
    text = _SERVER_FLAG.sub(lambda m: prefix + m.group(1), text.removesuffix(hint))
    if lines[-1].group(2).endswith(hint):
        text += f" (see surgebench {command} --help: its --FLAG is {prefix}FLAG here)"
    return text


def _pump(
    stream: IO[str], log: IO[str], say: Callable[[str], None], watch: MasterWatch | None
) -> None:
    for line in stream:
        log.write(line)
        log.flush()
        ours = watch.line(line) if watch is not None else None
        if ours is not None:
            say(ours)
        elif any(marker in line for marker in ECHO_MARKERS):
            say(line.rstrip())


def run_locust(
    settings: RunSettings,
    run_dir: Path,
    say: Callable[[str], None],
    watch: MasterWatch | None = None,
) -> int:
    """Run Locust to completion (SIGTERM to it on Ctrl-C); return its exit code."""
    argv = locust_argv(settings, run_dir)
    with (run_dir / "locust.log").open("w", encoding="utf-8") as log:
        log.write(" ".join(argv) + "\n")
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=locust_env(),
            start_new_session=True,
            **child_popen_options(),  # dies with this process, even on kill -9
        )
        assert proc.stdout is not None
        pump = threading.Thread(target=_pump, args=(proc.stdout, log, say, watch), daemon=True)
        try:
            pump.start()
            code = wait_child(proc)  # (also a stop whose exception was dropped, e.g. at the fork)
        except KeyboardInterrupt:
            say("interrupted: stopping Locust (it still writes what it measured)...")
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(settings.stop_timeout_s + 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            pump.join(timeout=5)
            raise
        pump.join(timeout=5)
    return code


def shape_note(settings: RunSettings) -> str | None:
    """A note when ``--duration`` ends a ``--shape`` before its peak (e.g. the demo's spike at
    25 s in a 20 s run), so that a run which never reached its load does not go unremarked."""
    if not settings.shape:
        return None
    schedule = parse_schedule(settings.shape, settings.duration_s)
    run_s = f"--duration {settings.duration_s:g}s"
    if schedule.kind == "spike":
        base, peak = schedule.levels
        at_s, for_s = schedule.times_s
        if at_s >= settings.duration_s:
            return (
                f"note: {run_s} ends before the spike to {peak} users at {at_s:g} s: this run "
                f"stays at {base} users (the whole spike needs --duration {at_s + for_s:g}s)"
            )
        return None
    every_s = schedule.times_s[0]
    periods = max(1, math.ceil(settings.duration_s / every_s))
    if schedule.kind == "step":
        start, step, cap = schedule.levels
        reached = min(cap, start + step * (periods - 1))
        if reached < cap:
            return f"note: {run_s} ends the step shape at {reached} of its {cap} users"
        return None
    if periods < len(schedule.levels):
        return (
            f"note: {run_s} ends the sweep shape after {periods} of its {len(schedule.levels)} "
            f"levels ({schedule.levels[periods - 1]} users)"
        )
    return None


def make_run_dir(settings: RunSettings) -> Path:
    """The run's folder, created: ``--run-dir`` as given, or a new one under ``--out``;
    `RunError` (exit 2) naming the flag when it cannot be created."""
    flag, where = ("--run-dir", settings.run_dir) if settings.run_dir else ("--out", settings.out)
    try:
        if settings.run_dir:
            run_dir = Path(settings.run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            return run_dir
        return new_run_dir(Path(settings.out), settings.name)
    except OSError as exc:
        raise RunError(
            f"{flag}: cannot create a run folder in {str(where)!r} ({exc.strerror or exc}); "
            "allowed: a folder this user can write",
            2,
        ) from None


def run(settings: RunSettings, say: Callable[[str], None] = print) -> RunResult:
    """The whole job; raises `RunError` when it cannot be done. Ctrl-C ends the test early,
    still stops every server and keeps what was measured."""
    run_dir = make_run_dir(settings)
    code = 1
    interrupted = False
    watch = MasterWatch(settings) if settings.master else None
    if settings.master and settings.master_port == 0:
        settings = replace(settings, master_port=free_loopback_port(settings.master_bind_host))
    try:
        with servers(settings, run_dir, say) as started:
            settings = replace(settings, host=started.host)
            write_config(run_dir, config_document(settings, started.effective))
            if settings.processes_reason:
                say(settings.processes_reason)
            note = shape_note(settings)
            if note:
                say(note)
            spread = f", {settings.processes} processes" if settings.processes > 1 else ""
            if settings.master:
                spread = f", {settings.expect_workers} remote workers"
            say(
                f"locust: {settings.user_class} x {settings.users} users{spread}"
                f"{f', rate {settings.rate:g}/s {settings.arrival}' if settings.rate else ''}"
                f"{f', shape {settings.shape}' if settings.shape else ''}"
                f", {settings.duration_s:g}s (warm-up {settings.warmup_s:g}s)"
            )
            if settings.master:
                for line in master_announcement(settings):
                    say(line)
            with scraping(local_targets(started.urls) + given_targets(settings.scrape), run_dir):
                code = run_locust(settings, run_dir, say, watch)
    except KeyboardInterrupt:
        interrupted = True
    summary_path = run_dir / "summary.json"
    summary = read_summary(summary_path) if summary_path.exists() else None
    if summary is None and interrupted:
        raise RunError(
            f"interrupted before anything was measured; see {run_dir / 'locust.log'}", 130
        )
    if summary is None and watch is not None and watch.gave_up:
        raise RunError(
            f"--expect-workers {watch.expected}: only {watch.connected} of {watch.expected} "
            f"workers connected within {settings.expect_workers_timeout_s:g}s "
            "(--expect-workers-timeout); no test ran"
        )
    if summary is None:
        raise RunError(
            f"Locust exited {code} without writing {summary_path}; see {run_dir / 'locust.log'}"
        )
    if interrupted:  # the figures cover `measured_s`, not the planned duration
        summary.interrupted = True
        write_summary(run_dir, summary)
    return RunResult(run_dir, summary, code, interrupted)


def config_json(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / CONFIG_FILE).read_text("utf-8"))
    return data
