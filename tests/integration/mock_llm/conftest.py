from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from surgebench.process import ServerProcess, surgebench_argv

StartMock = Callable[..., ServerProcess]


@pytest.fixture
def start_mock() -> Iterator[StartMock]:
    """Start `surgebench mock --port 0 ARGS...`; every started server is stopped afterwards."""
    started: list[ServerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        proc = ServerProcess(surgebench_argv("mock", "--port", "0", *args), env=env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    """A fast mock shared by a module's tests: TTFT 5 ms, ITL 1 ms, 8 tokens, stamps on."""
    argv = surgebench_argv(
        "mock", "--port", "0", "--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "8", "--stamp"
    )
    with ServerProcess(argv) as proc:
        yield proc.url
