"""`surgebench mock` / `python -m mock_llm`: resolve settings, listen, print the address, serve."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence

from mock_llm.errors import SettingsError
from mock_llm.server import serve
from mock_llm.settings import MockSettings, resolve
from surgebench.options import is_loopback


def _reason(exc: BaseException | None) -> str:
    """Why a bind failed, in the OS's words ("Address already in use"), without asyncio's
    repetition of the address."""
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


async def _run(settings: MockSettings) -> int:
    loop = asyncio.get_running_loop()
    started: asyncio.Future[str] = loop.create_future()
    task = asyncio.ensure_future(serve(settings, started))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiters: set[asyncio.Future[object]] = {task, started}  # type: ignore[arg-type]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():  # failed before listening (e.g. port in use)
        print(
            f"surgebench mock: cannot bind --host {settings.host} --port {settings.port}: "
            f"{_reason(task.exception())}",
            file=sys.stderr,
        )
        return 2  # as `surgebench serve`: the flags name an address this process cannot have
    url = started.result()
    print(f"listening on {url}", flush=True)
    if not is_loopback(settings.host):
        print(
            f"warning: bound to non-loopback address {settings.host}; anyone who can reach it "
            "can use this mock" + ("" if settings.api_key else " (no --api-key set)"),
            flush=True,
        )
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    stopper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the mock; return the exit code (2 for a bad flag or value)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = resolve(args)
    except SettingsError as exc:
        print(f"surgebench mock: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # argparse: unknown flag, --help
        return exc.code if isinstance(exc.code, int) else 2
    if settings.processes > 1:
        from mock_llm.replicas import supervise

        return supervise(settings)
    try:
        import uvloop

        return uvloop.run(_run(settings))
    except KeyboardInterrupt:
        return 0
