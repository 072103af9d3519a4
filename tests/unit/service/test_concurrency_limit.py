"""`--max-concurrent` is the concurrency limit under every limiting policy; `--workers` only
overrides it in queue mode."""

from __future__ import annotations

import pytest

from service.cli import main, parse_settings


@pytest.mark.parametrize("policy", ["queue", "semaphore"])
def test_max_concurrent_is_the_limit_under_each_policy(policy: str) -> None:
    s = parse_settings(["--admission", policy, "--max-concurrent", "32"], env={})
    assert s.max_concurrent == 32
    if policy == "queue":
        assert s.worker_count == 32


def test_workers_overrides_only_in_queue_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_settings(["--max-concurrent", "32", "--workers", "4"], env={}).worker_count == 4
    assert main(["--admission", "semaphore", "--workers", "4", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--workers" in err and "--admission queue" in err and "--max-concurrent" in err
