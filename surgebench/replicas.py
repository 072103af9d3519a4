"""Replicas: N worker processes of one server on one port, supervised, with merged /metrics.

`surgebench mock --processes N` and `surgebench serve --processes N` call `supervise()`. The
supervisor reserves the port (a bound, non-listening socket, so `--port 0` works), then starts N
workers (`worker_main`); each binds its own listening socket on that port with
`SO_REUSEPORT`, so the kernel spreads new connections across them by a hash of the client's
address and port. Each worker runs the ordinary single-process server (its own scheduler, its own
admission limits), so every limit holds per process, like N pods behind a load balancer.

The supervisor prints ``listening on http://HOST:PORT`` once every worker accepts, forwards
SIGINT/SIGTERM to the workers (each drains as the single-process server does) and stops all of
them when one dies. Workers die with the supervisor however it dies: `PR_SET_PDEATHSIG` (SIGTERM,
a graceful stop) and, as a backstop, end-of-file on the control pipe that is their stdin.

Metrics: each worker also answers its own metrics text on a Unix socket in a private folder
(``replica-<i>.sock``). The worker that receives ``GET /metrics`` reads every replica's text and
merges it (`merge_metrics`): counters and histograms are summed, gauges are kept per replica with
a ``replica`` label, and ``surgebench_replica_up`` says which replicas answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import os
import pickle
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from surgebench.options import is_loopback

MAX_PROCESSES = 64
READY_TIMEOUT_S = 60.0
METRICS_FETCH_TIMEOUT_S = 5.0
MAX_METRICS_BYTES = 16 * 1024 * 1024
REPLICA_PREFIX = "surgebench_replica_"
BALANCES = ("reuseport", "shared")
_PR_SET_PDEATHSIG = 1
_HEADER = struct.Struct("!Q")
WORKER_COMMAND = "import sys; from surgebench.replicas import worker_main; sys.exit(worker_main())"


# ---------------------------------------------------------------- worker side


@dataclass(frozen=True)
class WorkerConfig:
    """What the supervisor hands each worker (pickled once over the worker's stdin)."""

    target: str  # "module:function", called as function(settings, context) -> exit code
    settings: Any
    index: int
    count: int
    host: str
    port: int
    backlog: int
    metrics_dir: str
    parent_pid: int
    ready_fd: int
    shared_fd: int = -1  # balance "shared": the supervisor's listening socket, inherited


def socket_path(metrics_dir: str | Path, index: int) -> Path:
    """Where replica `index` answers its own (not merged) metrics text."""
    return Path(metrics_dir) / f"replica-{index}.sock"


def set_parent_death_signal(sig: int) -> bool:
    """Ask Linux to send `sig` to this process when its parent dies; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket with SO_REUSEADDR and SO_REUSEPORT, bound to (host, port), not listening."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening SO_REUSEPORT socket holding a port nobody else holds.

    SO_REUSEPORT lets any socket of the same user join a port, so first bind without it: that
    fails if anything (another server, another group of replicas) holds the port already."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    return reuseport_socket(host, port)


class ReplicaContext:
    """What a worker's server needs to be one replica: its socket, index, siblings, signals."""

    def __init__(self, config: WorkerConfig, sock: socket.socket, control_fd: int) -> None:
        self.config = config
        self.index = config.index
        self.count = config.count
        self.sock = sock
        self._control_fd = control_fd

    def ready(self) -> None:
        """Tell the supervisor this worker accepts connections."""
        os.write(self.config.ready_fd, b"%d\n" % self.index)
        os.close(self.config.ready_fd)

    def watch_parent(self, loop: asyncio.AbstractEventLoop, on_gone: Callable[[], None]) -> None:
        """Call `on_gone` once when the supervisor closes the control pipe (or dies)."""
        fd = self._control_fd

        def readable() -> None:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)
                on_gone()

        loop.add_reader(fd, readable)

    async def serve_local_metrics(self, render: Callable[[], bytes]) -> asyncio.AbstractServer:
        """Answer this replica's own metrics text to whoever connects to its Unix socket (in a
        private 0700 folder: only this user's processes can connect)."""

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                writer.write(render())
                await writer.drain()
            except ConnectionError:  # the asking replica gave up (its scrape timed out)
                pass
            finally:
                writer.close()

        path = socket_path(self.config.metrics_dir, self.index)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return await asyncio.start_unix_server(answer, path=str(path))

    async def merged_metrics(self, render_local: Callable[[], bytes]) -> bytes:
        """The merged metrics of all replicas (this one rendered in place)."""

        async def one(i: int) -> bytes | None:
            if i == self.index:
                return render_local()
            return await fetch_replica_metrics(self.config.metrics_dir, i)

        texts = await asyncio.gather(*(one(i) for i in range(self.count)))
        return merge_metrics(texts)


async def fetch_replica_metrics(
    metrics_dir: str | Path, index: int, timeout_s: float = METRICS_FETCH_TIMEOUT_S
) -> bytes | None:
    """One replica's own metrics text, or None if it does not answer in time."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(
                str(socket_path(metrics_dir, index))
            )
            data = await reader.read(MAX_METRICS_BYTES + 1)
            chunks = [data]
            size = len(data)
            while data and size <= MAX_METRICS_BYTES:
                data = await reader.read(MAX_METRICS_BYTES + 1 - size)
                chunks.append(data)
                size += len(data)
    except (OSError, TimeoutError):
        return None
    finally:
        if writer is not None:
            writer.close()
    return None if size > MAX_METRICS_BYTES else b"".join(chunks)


def replica_metrics_text(requests: int) -> bytes:
    """The replica's own counter, appended to its server's metrics."""
    return (
        b"# HELP surgebench_replica_requests_total HTTP requests this replica received\n"
        b"# TYPE surgebench_replica_requests_total counter\n"
        b"surgebench_replica_requests_total %d.0\n" % requests
    )


def _read_exact(fd: int, n: int) -> bytes:
    parts: list[bytes] = []
    while n > 0:
        data = os.read(fd, min(n, 1 << 20))
        if not data:
            raise EOFError("the supervisor closed the control pipe before the configuration")
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


def worker_main() -> int:
    """A worker process (`WORKER_COMMAND`): read the configuration from stdin and run the server."""
    set_parent_death_signal(signal.SIGTERM)
    control_fd = sys.stdin.fileno()
    (size,) = _HEADER.unpack(_read_exact(control_fd, _HEADER.size))
    config: WorkerConfig = pickle.loads(_read_exact(control_fd, size))
    if os.getppid() != config.parent_pid:  # the supervisor died before PDEATHSIG was armed
        return 1
    if config.shared_fd >= 0:
        sock = socket.socket(fileno=config.shared_fd)
    else:
        sock = reuseport_socket(config.host, config.port)
        sock.listen(config.backlog)
    sock.setblocking(False)
    module_name, function_name = config.target.split(":")
    run: Callable[[Any, ReplicaContext], int] = getattr(
        importlib.import_module(module_name), function_name
    )
    try:
        return run(config.settings, ReplicaContext(config, sock, control_fd))
    except KeyboardInterrupt:
        return 0
    finally:
        sock.close()
        with contextlib.suppress(OSError):  # the last replica out removes the folder
            socket_path(config.metrics_dir, config.index).unlink()
            os.rmdir(config.metrics_dir)


# ---------------------------------------------------------------- metrics merge


def _labels_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


class _Merged:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def merge_metrics(texts: list[bytes | None]) -> bytes:
    """Merge the Prometheus texts of replicas 0..N-1 (None: a replica that did not answer).

    Counters, histograms and untyped samples are summed per (name, labels). `_created` samples
    (and families of nothing else) are dropped: a sum of timestamps means nothing. Gauges, and
    the `surgebench_replica_*` families, keep one sample per replica with a `replica` label.
    """
    order: list[str] = []
    families: dict[str, Metric] = {}
    sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    per_replica: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    up: list[int] = []
    for index, text in enumerate(texts):
        parsed: list[Metric] | None = None
        if text is not None:
            try:
                parsed = list(text_string_to_metric_families(text.decode("utf-8")))
            except (ValueError, UnicodeDecodeError):
                parsed = None
        up.append(1 if parsed is not None else 0)
        for fam in parsed or ():
            if fam.name not in families:
                order.append(fam.name)
                families[fam.name] = Metric(fam.name, fam.documentation, fam.type)
                sums[fam.name] = {}
                per_replica[fam.name] = []
            labelled = fam.type == "gauge" or fam.name.startswith(REPLICA_PREFIX)
            for sample in fam.samples:
                if sample.name.endswith("_created"):
                    continue
                if labelled:
                    labels = {**sample.labels, "replica": str(index)}
                    per_replica[fam.name].append((sample.name, labels, sample.value))
                else:
                    key = (sample.name, _labels_key(sample.labels))
                    table = sums[fam.name]
                    table[key] = table.get(key, 0.0) + sample.value
    out: list[Metric] = []
    for name in order:
        fam = families[name]
        if not sums[name] and not per_replica[name]:
            continue  # only `_created` samples
        for (sample_name, label_pairs), value in sums[name].items():
            fam.add_sample(sample_name, dict(label_pairs), value)
        for sample_name, labels_dict, value in per_replica[name]:
            fam.add_sample(sample_name, labels_dict, value)
        out.append(fam)
    up_family = Metric("surgebench_replica_up", "1 if the replica answered this scrape", "gauge")
    for index, value in enumerate(up):
        up_family.add_sample("surgebench_replica_up", {"replica": str(index)}, float(value))
    out.append(up_family)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(out))  # type: ignore[arg-type]
    return generate_latest(registry)


# ---------------------------------------------------------------- supervisor side


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    control: Any  # the write end of its stdin


def _start_worker(config: WorkerConfig) -> _Worker:
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER_COMMAND],
        stdin=subprocess.PIPE,
        pass_fds=tuple(fd for fd in (config.ready_fd, config.shared_fd) if fd >= 0),
        process_group=0,  # a terminal's Ctrl-C reaches the supervisor only; it forwards SIGTERM
    )
    assert process.stdin is not None
    data = pickle.dumps(config)
    process.stdin.write(_HEADER.pack(len(data)) + data)
    process.stdin.flush()
    return _Worker(config.index, process, process.stdin)


def _stop_workers(workers: list[_Worker], timeout_s: float) -> list[int]:
    """SIGTERM every worker (each drains), wait up to timeout_s, then SIGKILL; exit codes."""
    for w in workers:
        if w.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                w.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    codes: list[int] = []
    for w in workers:
        try:
            codes.append(w.process.wait(max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            w.process.kill()
            codes.append(w.process.wait())
        with contextlib.suppress(OSError):
            w.control.close()
    return codes


def _wait_ready(
    read_fd: int, workers: list[_Worker], timeout_s: float, stop: threading.Event
) -> str | None:
    """None once every worker said it accepts (or a stop signal came); else why not."""
    waiting = {w.index for w in workers}
    buffer = b""
    deadline = time.monotonic() + timeout_s
    while waiting and not stop.is_set():
        for w in workers:
            code = w.process.poll()
            if code is not None:
                return f"replica {w.index} (pid {w.process.pid}) exited with code {code}"
        left = deadline - time.monotonic()
        if left <= 0:
            return f"replicas {sorted(waiting)} not listening within {timeout_s:g}s"
        readable, _, _ = select.select([read_fd], [], [], min(left, 0.2))
        if readable:
            data = os.read(read_fd, 4096)
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip().isdigit():
                    waiting.discard(int(line))
    return None


def supervise(
    target: str,
    settings: Any,
    *,
    host: str,
    port: int,
    processes: int,
    backlog: int,
    program: str,
    stop_timeout_s: float,
    balance: str = "reuseport",
) -> int:
    """Run `processes` replicas of a server on one port until SIGINT/SIGTERM; the exit code.

    `balance`: "reuseport" (each worker listens with SO_REUSEPORT; the kernel spreads new
    connections by hash) or "shared" (one listening socket, accepted by whichever worker wakes
    first; kept for `benchmarks/replicas.py`, which compares the two spreads).
    """
    if balance not in BALANCES:
        raise ValueError(f"balance {balance!r}; allowed: {', '.join(BALANCES)}")
    if not 1 <= processes <= MAX_PROCESSES:
        print(
            f"{program}: --processes: invalid value {processes!r}; allowed: an integer >= 1 "
            f"and <= {MAX_PROCESSES}",
            file=sys.stderr,
        )
        return 2
    try:
        reservation = reserve_port(host, port)
    except OSError as exc:
        print(
            f"{program}: cannot bind --host {host} --port {port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    bound_host, bound_port = reservation.getsockname()[:2]
    shared_fd = -1
    if balance == "shared":
        reservation.listen(backlog)
        shared_fd = reservation.fileno()
    metrics_dir = tempfile.mkdtemp(prefix=f"surgebench-replicas-{os.getpid()}-")
    read_fd, write_fd = os.pipe()
    stop = threading.Event()

    def on_signal(sig: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    workers: list[_Worker] = []
    try:
        for index in range(processes):
            config = WorkerConfig(
                target, settings, index, processes, host, bound_port, backlog, metrics_dir,
                os.getpid(), write_fd, shared_fd,
            )  # fmt: skip
            workers.append(_start_worker(config))
        os.close(write_fd)
        write_fd = -1
        problem = _wait_ready(read_fd, workers, READY_TIMEOUT_S, stop)
        if problem is not None:
            print(f"{program}: {problem}", file=sys.stderr)
            _stop_workers(workers, stop_timeout_s)
            return 1
        if stop.is_set():  # stopped while starting, as the single-process server exits 0
            _stop_workers(workers, stop_timeout_s)
            return 0
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        print(f"listening on http://{shown}:{bound_port}", flush=True)
        pids = ", ".join(str(w.process.pid) for w in workers)
        print(
            f"replicas: {processes} processes (pids {pids}), each with its own limits; "
            f"per-replica metrics sockets in {metrics_dir}",
            flush=True,
        )
        if not is_loopback(host):
            print(
                f"warning: bound to non-loopback address {host}; anyone who can reach it can use "
                "this server",
                file=sys.stderr,
                flush=True,
            )
        crashed: _Worker | None = None
        while crashed is None and not stop.wait(0.2):
            crashed = next((w for w in workers if w.process.poll() is not None), None)
        codes = _stop_workers(workers, stop_timeout_s)
        if crashed is not None:
            print(
                f"{program}: replica {crashed.index} (pid {crashed.process.pid}) exited with code "
                f"{crashed.process.returncode}; stopped the others",
                file=sys.stderr,
            )
            return 1
        return 0 if all(code == 0 for code in codes) else 1
    finally:
        if any(w.process.poll() is None for w in workers):
            _stop_workers(workers, stop_timeout_s)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
        reservation.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
