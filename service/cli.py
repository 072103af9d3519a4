"""`surgebench serve` / `python -m service`: parse settings, bind, run uvicorn (uvloop + httptools).

The socket is bound here and handed to uvicorn, so `--port 0` works and the first line printed is
`listening on http://HOST:PORT`, once the server accepts connections. SIGINT/SIGTERM start a
graceful drain: readiness turns 503, new requests are refused, in-flight streams get up to
`--shutdown-grace-s` to finish; then the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import socket
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

import uvicorn

from surgebench import options
from surgebench.options import is_loopback

from .app import ServiceApp, create_app
from .http_limits import limited_protocol
from .settings import ENV_PREFIX, ServiceSettings, SettingsError, build_settings


def build_parser() -> argparse.ArgumentParser:
    return options.build_parser(
        ServiceSettings,
        ENV_PREFIX,
        prog="surgebench serve",
        description="Run the reference streaming agent service.",
    )


def parse_settings(argv: Sequence[str], env: dict[str, str] | None = None) -> ServiceSettings:
    """Settings from flags and environment; SettingsError on a bad value."""
    args = build_parser().parse_args(list(argv))
    return build_settings(vars(args), env)


def bind_socket(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, printing our first line and draining the app on the first signal."""

    def __init__(self, config: uvicorn.Config, app: ServiceApp, address: str) -> None:
        super().__init__(config)
        self._app = app
        self._address = address

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(f"listening on {self._address}", flush=True)
            host = self._app.runtime.settings.host
            if not is_loopback(host):
                print(
                    f"warning: bound to {host}, reachable from other machines "
                    "(default is 127.0.0.1)",
                    file=sys.stderr,
                    flush=True,
                )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Drain with the listener still open (readiness probes see 503, new requests are
        # refused), then let uvicorn close it and cancel what the grace left running.
        grace_s = self._app.runtime.settings.shutdown_grace_s
        t0 = asyncio.get_running_loop().time()
        await self._app.runtime.drain(grace_s, lambda: self.force_exit)
        left_s = grace_s - (asyncio.get_running_loop().time() - t0)
        self.config.timeout_graceful_shutdown = max(1, int(left_s + 0.999))
        await super().shutdown(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.runtime.draining = True
        super().handle_exit(sig, frame)
        self._captured_signals.clear()  # a graceful stop exits 0 instead of re-raising


def uvicorn_config(app: Any, settings: ServiceSettings) -> uvicorn.Config:
    """The one uvicorn configuration of a service process (also each `--processes` worker)."""
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=limited_protocol(settings.body_timeout_s),  # httptools with head limits
        lifespan="on",
        access_log=settings.access_log,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s + 0.999),
        timeout_keep_alive=int(settings.http_keepalive_s),
        backlog=settings.backlog,
        server_header=False,
    )


def main(argv: Sequence[str]) -> int:
    try:
        settings = parse_settings(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, already printed)
        return int(exc.code or 0)
    except SettingsError as exc:
        print(f"surgebench serve: {exc}", file=sys.stderr)
        return 2
    if settings.processes > 1:
        from .replicas import supervise

        return supervise(settings)
    try:
        sock = bind_socket(settings.host, settings.port, settings.backlog)
    except OSError as exc:
        print(
            f"surgebench serve: cannot bind --host {settings.host} --port {settings.port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    app = create_app(dataclasses.replace(settings, port=port))  # /config shows the bound port
    config = uvicorn_config(app, settings)
    server = _Server(config, app, f"http://{shown}:{port}")
    loop_factory = config.get_loop_factory()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(server.serve(sockets=[sock]))
    except KeyboardInterrupt:  # a second Ctrl-C during the drain
        return 130
    finally:
        sock.close()
    return 0 if server.started else 1
