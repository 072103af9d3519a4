"""`surgebench serve --processes N`: N service processes on one port, like N pods.

Each worker runs the ordinary app (`create_app`) under uvicorn on its own `SO_REUSEPORT` socket,
so every limit (admission, queue, timeouts, upstream pool, body and batch sizes) holds per
process: `--max-concurrent 32 --processes 2` admits up to 64 streams in all, 32 per process, and
which process a connection lands on is the kernel's choice. Each response carries `X-Replica`
(the index of the process that served it); `GET /metrics` answers the merged metrics of all
replicas (see `surgebench.replicas`). SIGINT/SIGTERM drain every replica as the single-process
server drains.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
from types import FrameType

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import Message, Receive, Scope, Send

from surgebench.replicas import ReplicaContext, replica_metrics_text
from surgebench.replicas import supervise as _supervise

from .app import ServiceApp, create_app
from .cli import uvicorn_config
from .settings import ServiceSettings
from .validation import request_id as make_request_id

REPLICA_HEADER = b"x-replica"
STOP_MARGIN_S = 10.0


class ReplicaApp:
    """The ASGI app of one replica: tags responses with `X-Replica`, merges `/metrics`."""

    def __init__(self, inner: ServiceApp, ctx: ReplicaContext) -> None:
        self.inner = inner
        self.ctx = ctx
        self.requests_received = 0
        self._tag = (REPLICA_HEADER, str(ctx.index).encode("ascii"))

    def local_metrics(self) -> bytes:
        """This replica's own metrics (what the single-process service answers) + its count."""
        return self.inner.runtime.metrics.render() + replica_metrics_text(self.requests_received)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        self.requests_received += 1
        if scope["path"] == "/metrics" and scope["method"] == "GET":
            await self._metrics(scope, send)
            return
        tag = self._tag

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), tag]}
            await send(message)

        await self.inner(scope, receive, tagged)

    async def _metrics(self, scope: Scope, send: Send) -> None:
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = make_request_id(given.decode("latin-1") if given is not None else None)
        body = await self.ctx.merged_metrics(self.local_metrics)
        headers = [
            (b"content-type", CONTENT_TYPE_LATEST.encode("latin-1")),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"x-request-id", rid.encode("ascii")),
            self._tag,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _ReplicaServer(uvicorn.Server):
    """uvicorn's server: says ready instead of printing, drains on the first signal or when the
    supervisor goes away."""

    def __init__(self, config: uvicorn.Config, app: ReplicaApp) -> None:
        super().__init__(config)
        self._app = app
        self._local: asyncio.AbstractServer | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            ctx = self._app.ctx
            self._local = await ctx.serve_local_metrics(self._app.local_metrics)
            ctx.watch_parent(
                asyncio.get_running_loop(), lambda: self.handle_exit(signal.SIGTERM, None)
            )
            ctx.ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._local is not None:
            self._local.close()
        await super().shutdown(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.inner.runtime.draining = True
        super().handle_exit(sig, frame)
        self._captured_signals.clear()  # a graceful stop exits 0 instead of re-raising


def run_worker(settings: ServiceSettings, ctx: ReplicaContext) -> int:
    """One replica (called in the worker process by `surgebench.replicas.worker_main`)."""
    bound = dataclasses.replace(settings, port=ctx.sock.getsockname()[1])  # for /config
    app = ReplicaApp(create_app(bound), ctx)
    config = uvicorn_config(app, settings)
    server = _ReplicaServer(config, app)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(server.serve(sockets=[ctx.sock]))
    return 0 if server.started else 1


def supervise(settings: ServiceSettings) -> int:
    """Run `settings.processes` replicas until SIGINT/SIGTERM; the exit code."""
    return _supervise(
        "service.replicas:run_worker",
        settings,
        host=settings.host,
        port=settings.port,
        processes=settings.processes,
        backlog=settings.backlog,
        program="surgebench serve",
        stop_timeout_s=settings.shutdown_grace_s + STOP_MARGIN_S,
    )
