"""`surgebench mock --processes N`: N mock processes on one port, each one model replica.

Each worker runs an ordinary `MockApp` (its own scheduler, so in engine mode its own
`max_num_seqs`, batch and waiting queue: N GPUs behind a load balancer; also its own rate limits)
on its own `SO_REUSEPORT` socket. `GET /metrics` on any replica answers the merged metrics of all
of them (see `surgebench.replicas`). The supervision lives in `surgebench.replicas`.
"""

from __future__ import annotations

import asyncio
import signal

from mock_llm.http import Connection, Request
from mock_llm.metrics import render
from mock_llm.server import ROUTES, MockApp
from mock_llm.settings import MockSettings
from surgebench.replicas import ReplicaContext, replica_metrics_text
from surgebench.replicas import supervise as _supervise

METRICS_METHODS = ROUTES[b"/metrics"]  # any other method: the single-process answer (405)
METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
LISTEN_BACKLOG = 4096  # the single-process mock's backlog
STOP_TIMEOUT_S = 10.0


class ReplicaMockApp(MockApp):
    """A `MockApp` that counts its requests and answers `/metrics` merged across replicas."""

    def __init__(
        self, settings: MockSettings, loop: asyncio.AbstractEventLoop, ctx: ReplicaContext
    ) -> None:
        super().__init__(settings, loop)
        self.ctx = ctx
        self.requests_received = 0
        self._scrapes: set[asyncio.Task[None]] = set()

    def handle(self, conn: Connection, req: Request) -> None:
        self.requests_received += 1
        if req.path == b"/metrics" and req.method in METRICS_METHODS:
            task = self.loop.create_task(self._answer_metrics(conn))
            self._scrapes.add(task)
            task.add_done_callback(self._scrapes.discard)
            return
        super().handle(conn, req)

    def local_metrics(self) -> bytes:
        """This replica's own metrics (what the single-process mock would answer) + its count."""
        return render(self.registry) + replica_metrics_text(self.requests_received)

    async def _answer_metrics(self, conn: Connection) -> None:
        body = await self.ctx.merged_metrics(self.local_metrics)
        if not conn.closed:
            conn.respond(200, body, content_type=METRICS_CONTENT_TYPE)


async def _serve(settings: MockSettings, ctx: ReplicaContext) -> int:
    loop = asyncio.get_running_loop()
    app = ReplicaMockApp(settings, loop, ctx)
    app.config_body = app.config_json(ctx.sock.getsockname()[1])  # /config: the port bound
    server = await loop.create_server(
        lambda: Connection(app), sock=ctx.sock, backlog=LISTEN_BACKLOG
    )
    local = await ctx.serve_local_metrics(app.local_metrics)
    app.start_sweeper()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ctx.watch_parent(loop, stop.set)
    ctx.ready()
    try:
        await stop.wait()
    finally:
        app.stop()
        server.close()
        local.close()
    return 0


def run_worker(settings: MockSettings, ctx: ReplicaContext) -> int:
    """One replica (called in the worker process by `surgebench.replicas.worker_main`)."""
    import uvloop

    return uvloop.run(_serve(settings, ctx))


def supervise(settings: MockSettings, balance: str = "reuseport") -> int:
    """Run `settings.processes` replicas until SIGINT/SIGTERM; the exit code."""
    return _supervise(
        "mock_llm.replicas:run_worker",
        settings,
        host=settings.host,
        port=settings.port,
        processes=settings.processes,
        backlog=LISTEN_BACKLOG,
        program="surgebench mock",
        stop_timeout_s=STOP_TIMEOUT_S,
        balance=balance,
    )
