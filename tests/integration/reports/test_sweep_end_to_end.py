"""A tiny real sweep: mock + service + Locust per cell, two configurations x two loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtests.sweep import main as sweep_main
from reports.cli import capacity_main, compare_main
from reports.results import read_summary
from reports.sweeps import read_manifest

CONFIG = """
name = "tiny"
duration = "2s"
warmup = "0s"
retries_invalid = 0  # reruns have their own test (STALLED below); here they only cost time
loads = [2, 6]
slo = "ttft_p95<1000ms,rejections<5%"
[mock]
ttft-ms = 50
output-tokens = 10
[service]
queue-size = 16
[matrix.service]
max-concurrent = [1, 4]
"""


@pytest.mark.integration
@pytest.mark.timeout(300)  # 4 real cells; under a load average of 7 they took over 150 s
def test_tiny_sweep_ranks_configurations_and_answers_capacity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    out = tmp_path / "sweep"
    assert sweep_main([str(config), "--out", str(out), "--no-svg"]) == 0
    manifest = read_manifest(out)
    assert [c.status for c in manifest.cells] == ["done"] * 4
    service_args = set()
    for cell in manifest.cells:
        run_dir = out / str(cell.run_dir)
        assert run_dir == out / "runs" / cell.id  # the folder the sweep chose for the cell
        assert (run_dir / "summary.json").exists()
        config = json.loads((run_dir / "config.json").read_text())
        service_args.add(tuple(config["service_args"]))
    # each configuration reached the service as asked (no demo defaults in between)
    assert service_args == {
        ("--queue-size", "16", "--max-concurrent", "1"),
        ("--queue-size", "16", "--max-concurrent", "4"),
    }
    markdown = (out / "report.md").read_text()
    assert "## Which configuration should I use?" in markdown
    ranking = [line for line in markdown.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert sorted(line.split("|")[2].strip() for line in ranking) == [
        "max-concurrent=1",
        "max-concurrent=4",
    ]
    assert (out / "figures" / "ttft_p95_vs_load.png").exists()
    capsys.readouterr()

    # This shared 2-core machine often flags its own client lag, so count invalid runs too.
    answer = tmp_path / "capacity.json"
    code = capacity_main(
        [
            str(out),
            "--slo",
            "ttft_p95<1000ms,rejections<5%",
            "--include-invalid",
            "--json",
            str(answer),
        ]
    )
    printed = capsys.readouterr().out
    data = json.loads(answer.read_text())
    assert data["recommendation"] in printed
    held = {c["configuration"]: c["max_load"] for c in data["configurations"]}
    assert set(held) == {"max-concurrent=1", "max-concurrent=4"}
    # Two users against a limit of four (mock TTFT 50 ms) are far inside the SLO.
    assert code == 0, printed
    assert data["recommended"] in held
    assert data["recommendation"].startswith(f"Use {data['recommended']}: it holds")
    # A limit of four never holds less load than a limit of one against the same mock.
    assert (held["max-concurrent=4"] or 0) >= (held["max-concurrent=1"] or 0)
    check_compare_opens_with_what_the_servers_ran_with(out, capsys)


def check_compare_opens_with_what_the_servers_ran_with(
    sweep_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two real runs that differ only in the service's --max-concurrent (the sweep's two cells at
    2 users): compare names that difference, read from what the service itself reported
    (GET /config), before any verdict."""
    runs = [sweep_dir / "runs" / cell for cell in ("c00-l00", "c01-l00")]
    for run_dir, limit in zip(runs, (1, 4), strict=True):
        summary = read_summary(run_dir)
        assert summary.effective["service"]["max_concurrent"] == limit
        assert summary.effective["mock"]["ttft_ms"] == 50
    capsys.readouterr()
    compare_main([str(runs[0]), str(runs[1])])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "- effective configuration: service.max_concurrent 1 -> 4", lines[:4]


STALLED = """
name = "stalled"
duration = "2s"
warmup = "0s"
loads = [2]
retries_invalid = 1
slo = "ttft_p95<1000ms"
[run]
max-cpu-percent = 0
[mock]
ttft-ms = 20
output-tokens = 5
"""


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_cell_invalid_for_the_cpu_guard_is_rerun_then_named_untrusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CPU limit of 0 % cannot be met: the real run is invalid for a transient cause (the CPU
    guard) every time, so the sweep reruns it once (no more) and the answer names the cell."""
    config = tmp_path / "stalled.toml"
    config.write_text(STALLED)
    out = tmp_path / "sweep"
    assert sweep_main([str(config), "--out", str(out), "--no-svg"]) == 0
    (cell,) = read_manifest(out).cells
    assert (cell.status, cell.attempts) == ("done", 2)
    # the CPU guard, and on a busy machine client or loop lag too: all transient causes
    assert len(cell.reruns) == 1 and cell.reruns[0]
    assert (out / "runs" / "c00-l00.attempt1" / "summary.json").exists()
    assert (out / "runs" / "c00-l00" / "summary.json").exists()
    printed = capsys.readouterr().out
    assert "Could not trust 1 cell" in printed
    assert "default @ 2 users: invalid after 1 rerun (" in printed
    assert "1 cell(s) were rerun" in (out / "report.md").read_text()
