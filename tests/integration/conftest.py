"""Fixtures shared by the integration tests: real servers on 127.0.0.1 port 0."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from surgebench.process import ServerProcess, surgebench_argv

Start = Callable[..., ServerProcess]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def start() -> Iterator[Start]:
    """start("mock"|"serve", *args, env=None, port="0"): a server, stopped after the test."""
    started: list[ServerProcess] = []

    def run(
        command: str, *args: str, env: dict[str, str] | None = None, port: str = "0"
    ) -> ServerProcess:
        proc = ServerProcess(surgebench_argv(command, "--port", port, *args), env=env)
        started.append(proc)
        return proc

    yield run
    for proc in started:
        proc.stop()
