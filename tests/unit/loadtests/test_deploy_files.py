"""deploy/: the docker-compose file and the Kubernetes manifest run commands that parse, and
their master waits for as many workers as they start, on the port the workers dial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML, installed with the test dependencies

from loadtests.settings import parse_run_args
from loadtests.worker import parse_worker_args

pytestmark = pytest.mark.timeout(30)

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def test_compose_master_expects_the_workers_it_starts() -> None:
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    master = services["master"]["command"]
    worker = services["worker"]["command"]
    assert master[0] == "run" and worker[0] == "worker"
    settings = parse_run_args(master[1:])
    assert settings.master and settings.master_bind_host == "0.0.0.0"
    assert settings.expect_workers == services["worker"]["deploy"]["replicas"]
    target = settings.target.removeprefix("http://").split(":")[0]
    assert target in services  # the compose mock
    ns = parse_worker_args(worker[1:])
    assert (ns.master_host, ns.master_port) == ("master", settings.master_port)


def test_kubernetes_master_expects_the_workers_it_starts() -> None:
    docs: list[dict[str, Any]] = list(
        yaml.safe_load_all((DEPLOY / "kubernetes" / "surgebench.yaml").read_text())
    )
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    master_job = by_name[("Job", "surgebench-master")]
    workers = by_name[("Deployment", "surgebench-workers")]
    service = by_name[("Service", "surgebench-master")]
    master_args = master_job["spec"]["template"]["spec"]["containers"][0]["args"]
    worker_args = workers["spec"]["template"]["spec"]["containers"][0]["args"]
    settings = parse_run_args(master_args[1:])
    assert settings.master and settings.target
    assert settings.expect_workers == workers["spec"]["replicas"]
    assert (
        workers["spec"]["selector"]["matchLabels"]
        == workers["spec"]["template"]["metadata"]["labels"]
    )
    assert service["spec"]["ports"][0]["port"] == settings.master_port
    assert service["spec"]["selector"] == master_job["spec"]["template"]["metadata"]["labels"]
    ns = parse_worker_args(worker_args[1:])
    assert (ns.master_host, ns.master_port) == ("surgebench-master", settings.master_port)
    assert ns.loop  # the Deployment's workers outlive each master Job
