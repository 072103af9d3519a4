"""`surgebench worker`: one Locust worker of a ``surgebench run --master`` on another host.

Locust-free: Locust runs as a child (``python -m locust -f loadtests/locustfile.py --worker``)
that dies with this process. It takes no run flags: the master sends its configuration in
Locust's spawn messages (`loadtests.distributed`). It writes no files; it prints its own share
(``[surgebench] worker totals: {...}``) when the master ends the test, and exits with it; with
``--loop`` it then waits for the next master (repeated runs, a sweep, a Kubernetes Deployment).
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
from collections.abc import Sequence

from loadtests.distributed import CONNECT_TIMEOUT_ENV
from loadtests.runner import LOCUSTFILE, locust_env
from surgebench.interrupts import interruptible, wait_child
from surgebench.options import argparse_message
from surgebench.process import child_popen_options
from surgebench.units import DurationError, format_duration_s, parse_duration_s

DEFAULT_MASTER_PORT = 5557
"""Locust's default master port (``surgebench run --master``'s default too)."""
STOP_WAIT_S = 30.0
"""After SIGTERM/Ctrl-C: how long the Locust worker gets to stop before it is killed."""
NO_MASTER_EXIT = 255
"""Locust's worker exit code when no master answered within ``--connect-timeout``."""
DEFAULT_CONNECT_TIMEOUT_S = 300.0
"""How long a worker waits for its master by default (Locust's own: 60 tries of 5 s)."""
MIN_CONNECT_TIMEOUT_S, MAX_CONNECT_TIMEOUT_S = 5.0, 86_400.0
CONNECT_RANGE = "5s to 24h"


class WorkerArgsError(ValueError):
    """A bad flag: the message names it and the allowed values."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise WorkerArgsError(argparse_message(message, self.prog, {"--master-port": "1..65535"}))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="surgebench worker",
        description="Run one Locust worker for a `surgebench run --master` (docs/distributed.md). "
        "The master sends the run's configuration; the worker writes no files and exits when "
        "the master's test ends.",
    )
    p.add_argument("--master-host", metavar="HOST", help="the master's address (required)")
    p.add_argument("--master-port", type=int, default=DEFAULT_MASTER_PORT, metavar="PORT",
                   help=f"the master's port (default {DEFAULT_MASTER_PORT})")  # fmt: skip
    p.add_argument("--connect-timeout", default=format_duration_s(DEFAULT_CONNECT_TIMEOUT_S),
                   metavar="DURATION", help="give up when no master answered within this long "
                   f"(default {format_duration_s(DEFAULT_CONNECT_TIMEOUT_S)}, Locust's; "
                   f"{CONNECT_RANGE}, in Locust's 5 s tries); with --loop, try again")  # fmt: skip
    p.add_argument("--loop", action="store_true", help="after the master's test ends (or no "
                   "master answered), wait for the next one, until stopped")  # fmt: skip
    return p


def parse_worker_args(argv: Sequence[str]) -> argparse.Namespace:
    ns = build_parser().parse_args(list(argv))  # (an unknown flag is named before a missing one)
    if ns.master_host is None:
        raise WorkerArgsError("--master-host: required (the master's address)")
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,253}", ns.master_host):
        raise WorkerArgsError(
            f"--master-host: bad value {ns.master_host!r}; allowed: an IP address or host name"
        )
    if not 1 <= ns.master_port <= 65_535:
        raise WorkerArgsError(f"--master-port: bad value {ns.master_port}; allowed: 1..65535")
    try:
        ns.connect_timeout_s = parse_duration_s(ns.connect_timeout)
    except DurationError as exc:
        raise WorkerArgsError(f"--connect-timeout: {exc}") from None
    if not MIN_CONNECT_TIMEOUT_S <= ns.connect_timeout_s <= MAX_CONNECT_TIMEOUT_S:
        raise WorkerArgsError(
            f"--connect-timeout: bad value {ns.connect_timeout!r}; allowed: {CONNECT_RANGE}"
        )
    return ns


def worker_argv(master_host: str, master_port: int) -> list[str]:
    """The Locust worker's command line: our locustfile, the master, nothing of the run."""
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
        "--master-host", master_host, "--master-port", str(master_port),
    ]  # fmt: skip


def main(argv: Sequence[str]) -> int:
    try:
        ns = parse_worker_args(argv)
    except WorkerArgsError as exc:
        print(f"surgebench worker: {exc}", file=sys.stderr)
        return 2
    try:
        with interruptible():
            while True:
                code = _one_test(ns.master_host, ns.master_port, ns.connect_timeout_s)
                if not ns.loop or code not in (0, NO_MASTER_EXIT):
                    break
                print("worker: waiting for the next master (--loop)", flush=True)
    except KeyboardInterrupt:
        return 130
    if code == NO_MASTER_EXIT:
        print(
            f"surgebench worker: no Locust master answered at {ns.master_host}:{ns.master_port} "
            f"within {ns.connect_timeout} (--connect-timeout); is `surgebench run --master` "
            "running there, and is the port open?",
            file=sys.stderr,
        )
        return 1
    return code


def _one_test(master_host: str, master_port: int, connect_timeout_s: float) -> int:
    """One Locust worker, from connecting to the master until it quits; its exit code."""
    print(f"worker: connecting to the Locust master at {master_host}:{master_port}", flush=True)
    proc = subprocess.Popen(
        worker_argv(master_host, master_port),
        stdin=subprocess.DEVNULL,
        env={**locust_env(), CONNECT_TIMEOUT_ENV: f"{connect_timeout_s:g}"},
        start_new_session=True,
        **child_popen_options(),  # dies with this process, even on kill -9
    )
    try:
        return wait_child(proc)
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGTERM)  # Locust's worker stops and tells the master it quit
        try:
            proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
