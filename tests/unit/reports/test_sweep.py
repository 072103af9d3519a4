"""The sweep's planning, resume and report logic, with a fake `surgebench run`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from loadtests.sweep import CellOutcome, Progress, main
from loadtests.sweep_plan import SweepConfigError, cell_argv, parse_plan
from reports.cli import capacity_main, report_main
from reports.results import write_summary
from reports.sweeps import read_manifest
from tests.unit.reports.synthetic import RunSpec, make_summary

CONFIG = """
name = "demo"
duration = "5s"
warmup = "1s"
loads = [4, 8, 16]
slo = "ttft_p95<800ms,rejections<1%"
[mock]
ttft-ms = 100
[matrix.service]
max-concurrent = [4, 16]
queue-size = [64]
"""


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


class FakeRun:
    """Plays `surgebench run`: TTFT grows once users exceed max-concurrent, as in a queue."""

    def __init__(self, interrupt_after: int | None = None, fail: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.interrupt_after = interrupt_after
        self.fail = fail

    def __call__(self, args: list[str], log_path: Path, timeout_s: float) -> CellOutcome:
        if self.interrupt_after is not None and len(self.calls) == self.interrupt_after:
            raise KeyboardInterrupt
        self.calls.append(args)
        name = _flag(args, "--name")
        if self.fail and name.endswith(self.fail):
            return CellOutcome("surgebench run exited 1")
        users = int(_flag(args, "--users"))
        limit = int(_flag(args, "--service-max-concurrent"))
        ttft = 150.0 * max(1.0, users / limit) ** 2
        spec = RunSpec(
            name=name,
            requests=60,
            ttft_ms=ttft,
            ttft_sigma=0.1,
            users=users,
            tokens_per_request=5,
            duration_s=5,
            breakdown=False,
        )
        write_summary(Path(_flag(args, "--run-dir")), make_summary(spec))
        return CellOutcome()


def _write_config(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_plan_is_the_matrix_product() -> None:
    import tomllib

    plan = parse_plan(tomllib.loads(CONFIG))
    assert [c.name for c in plan.configurations] == ["max-concurrent=4", "max-concurrent=16"]
    assert plan.configurations[0].service == {"max-concurrent": 4, "queue-size": 64}
    cells = plan.cells()
    assert [(c.id, c.load) for c in cells[:3]] == [("c00-l00", 4), ("c00-l01", 8), ("c00-l02", 16)]
    argv = cell_argv(plan, cells[4], Path("out/runs/c01-l01"))
    assert argv == [
        "run",
        "--name",
        "demo-c01-l01",
        "--run-dir",
        "out/runs/c01-l01",
        "--duration",
        "5s",
        "--no-report",
        "--users",
        "8",
        "--warmup",
        "1s",
        "--mock-ttft-ms",
        "100",
        "--service-max-concurrent",
        "16",
        "--service-queue-size",
        "64",
    ]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"colour": "red"}, "unknown key(s) ['colour']"),
        ({"duration": "ten"}, "duration = 'ten' is not valid"),
        ({"loads": []}, "loads = [] is not valid"),
        ({"loads": [1.5]}, "users must be whole numbers"),
        ({"load_kind": "qps"}, "allowed: users, rate"),
        ({"slo": "ttft<1s"}, "unknown metric 'ttft'"),
        ({"run": {"users": 5}}, "[run] may not set ['users']"),
        ({"matrix": {"service": {"max-concurrent": 4}}}, "expected a non-empty list"),
    ],
)
def test_bad_config_names_the_key(patch: dict[str, object], message: str) -> None:
    data: dict[str, object] = {"duration": "5s", "loads": [1, 2]}
    data.update(patch)
    with pytest.raises(SweepConfigError) as caught:
        parse_plan(data)
    assert message in str(caught.value)


def test_a_missing_duration_is_called_missing() -> None:
    with pytest.raises(SweepConfigError, match=r"duration is missing; give each cell's run time"):
        parse_plan({"loads": [1, 2]})


def test_the_documented_example_matrix_gives_distinct_configurations() -> None:
    """`max-concurrent = [8, 32]` x `queue-size = [0, 64]` from the docs: four configurations."""
    import tomllib

    from loadtests import sweep_plan

    example = sweep_plan.__doc__ or ""
    toml = "\n".join(
        line.split("#")[0].strip()
        for line in example[example.index("name = ") : example.index("service = {max")].splitlines()
    )
    plan = parse_plan(tomllib.loads(toml + "\nservice = {max-concurrent = 128}\n"))
    assert [c.name for c in plan.configurations] == [
        "max-concurrent=8,queue-size=0",
        "max-concurrent=8,queue-size=64",
        "max-concurrent=32,queue-size=0",
        "max-concurrent=32,queue-size=64",
        "big",
    ]


@pytest.mark.parametrize(
    ("matrix", "same"),
    [
        (
            {"workers": [0, 64], "max-concurrent": [64]},
            "workers=0 (cells c00-*) = workers=64 (cells c01-*)",
        ),
        ({"max-concurrent": [8, 16], "queue-size": [64, "64.0"]}, "queue-size=64 (cells c00-*) = "),
        ({"stamp": [True, "on"]}, "stamp=true (cells c00-*) = stamp=on (cells c01-*)"),
    ],
)
def test_a_plan_whose_configurations_resolve_alike_is_refused(
    matrix: dict[str, list[object]], same: str
) -> None:
    with pytest.raises(SweepConfigError, match="resolve to the same settings") as caught:
        parse_plan({"duration": "5s", "loads": [1], "matrix": {"service": matrix}})
    assert same in str(caught.value)


def test_workers_count_only_under_the_queue_policy() -> None:
    listed = [
        {"name": "sem-1", "service": {"admission": "semaphore", "workers": 1}},
        {"name": "sem-4", "service": {"admission": "semaphore", "workers": 4}},
    ]
    with pytest.raises(SweepConfigError, match=r"sem-1 \(cells c00-\*\) = sem-4 \(cells c01-\*\)"):
        parse_plan({"duration": "5s", "loads": [1], "configurations": listed})
    queue = [{"name": f"q{w}", "service": {"workers": w}} for w in (1, 4)]
    assert len(parse_plan({"duration": "5s", "loads": [1], "configurations": queue}).cells()) == 2


def test_sweep_refuses_identical_configurations_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write_config(tmp_path, CONFIG.replace("[4, 16]", "[16]\nworkers = [0, 16]"))
    fake = FakeRun()
    assert main([str(config), "--out", str(tmp_path / "s")], runner=fake) == 2
    assert fake.calls == []
    assert "(workers=0 (cells c00-*) = workers=16 (cells c01-*))" in capsys.readouterr().err


def test_progress_eta_uses_an_injected_clock() -> None:
    now = [100.0]
    stream = io.StringIO()
    progress = Progress(total=4, stream=stream, clock=lambda: now[0])
    assert progress.eta_s() is None
    now[0] = 130.0
    progress.ran = progress.done = 1
    assert progress.eta_s() == pytest.approx(90.0)
    progress.note("x")
    assert "[#####---------------] 1/4 cells, elapsed 0m30s, ETA 1m30s | x" in stream.getvalue()


def test_sweep_runs_every_cell_and_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep"
    fake = FakeRun()
    assert main([str(_write_config(tmp_path)), "--out", str(out)], runner=fake) == 0
    assert len(fake.calls) == 6
    manifest = read_manifest(out)
    assert all(cell.status == "done" for cell in manifest.cells)
    assert all((out / str(cell.run_dir) / "summary.json").exists() for cell in manifest.cells)
    stdout = capsys.readouterr().out
    # 4 users at max-concurrent=4 stays at 150 ms; 8 users -> 600 ms; 16 -> 2400 ms.
    assert stdout.startswith("Use max-concurrent=16: it holds 16 users")
    assert f"results: {out}" in stdout
    html = (out / "report.html").read_text()
    assert html.index("Which configuration should I use?") < html.index("Ranking")
    assert html.count("data:image/png;base64,") == 4
    for stem in ("ttft_p95_vs_load", "throughput_vs_load", "rejections_vs_load", "frontier"):
        assert (out / "figures" / f"{stem}.png").exists()
        assert (out / "figures" / f"{stem}.svg").exists()
    markdown = (out / "report.md").read_text()
    assert "| 1 | max-concurrent=16 | 16 |" in markdown
    assert "| 2 | max-concurrent=4 | 8 |" in markdown

    answer = tmp_path / "capacity.json"
    assert capacity_main([str(out), "--slo", "ttft_p95<300ms", "--json", str(answer)]) == 0
    data = json.loads(answer.read_text())
    assert data["recommended"] == "max-concurrent=16"
    assert {c["configuration"]: c["max_load"] for c in data["configurations"]} == {
        "max-concurrent=16": 16.0,
        "max-concurrent=4": 4.0,
    }
    assert capacity_main([str(out), "--slo", "ttft_p95<50ms"]) == 1
    assert report_main([str(out), "--slo", "ttft_p95<300ms", "--no-svg"]) == 0


def test_interrupted_sweep_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, out = _write_config(tmp_path), tmp_path / "sweep"
    assert main([str(config), "--out", str(out)], runner=FakeRun(interrupt_after=2)) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert [c.status for c in read_manifest(out).cells].count("done") == 2
    second = FakeRun()
    assert main([str(config), "--out", str(out), "--no-report"], runner=second) == 0
    assert [_flag(call, "--name") for call in second.calls] == [
        "demo-c00-l02",
        "demo-c01-l00",
        "demo-c01-l01",
        "demo-c01-l02",
    ]
    assert "resuming: 2 cell(s) already have results" in capsys.readouterr().err
    third = FakeRun()
    assert main([str(config), "--out", str(out), "--no-report"], runner=third) == 0
    assert third.calls == []


def test_failed_cell_is_reported_and_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, out = _write_config(tmp_path), tmp_path / "sweep"
    assert (
        main([str(config), "--out", str(out), "--no-report"], runner=FakeRun(fail="c01-l00")) == 1
    )
    err = capsys.readouterr().err
    assert "1 cell(s) failed: c01-l00: surgebench run exited 1" in err
    cell = next(c for c in read_manifest(out).cells if c.id == "c01-l00")
    assert (cell.status, cell.error) == ("failed", "surgebench run exited 1")
    retry = FakeRun()
    assert main([str(config), "--out", str(out), "--no-report"], runner=retry) == 0
    assert [_flag(call, "--name") for call in retry.calls] == ["demo-c01-l00"]


def test_sweep_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, out = _write_config(tmp_path), tmp_path / "sweep"
    assert main([str(tmp_path / "missing.toml"), "--out", str(out)], runner=FakeRun()) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main([str(config)], runner=FakeRun()) == 2
    assert "--out" in capsys.readouterr().err
    assert main([str(config), "--out", str(out), "--dry-run"], runner=FakeRun()) == 0
    assert "c01-l02 [max-concurrent=16 @ 16]: surgebench run --name demo-c01-l02" in (
        capsys.readouterr().out
    )
    assert main([str(config), "--out", str(out), "--no-report"], runner=FakeRun()) == 0
    changed = _write_config(tmp_path, CONFIG.replace("[4, 8, 16]", "[4, 8]"))
    assert main([str(changed), "--out", str(out)], runner=FakeRun()) == 2
    assert "different plan" in capsys.readouterr().err


def test_json_config_and_rate_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "sweep.json"
    config.write_text(
        json.dumps(
            {
                "name": "open",
                "duration": "3s",
                "load_kind": "rate",
                "loads": [2.5, 5],
                "run": {"users": 50, "arrival": "poisson"},
                "configurations": [{"name": "a", "service": {"admission": "none"}}],
            }
        )
    )
    assert main([str(config), "--out", str(tmp_path / "s"), "--dry-run"], runner=FakeRun()) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "c00-l00 [a @ 2.5]: surgebench run --name open-c00-l00 "
        f"--run-dir {tmp_path}/s/runs/c00-l00 "
        "--duration 3s --no-report --rate 2.5 --users 50 --arrival poisson "
        "--service-admission none"
    )


class StallingRun(FakeRun):
    """A fake `surgebench run` whose named cell is invalid for `stalls` attempts (its reason
    given by `reason`), then valid."""

    def __init__(self, cell: str, stalls: int, reason: str) -> None:
        super().__init__()
        self.cell, self.stalls, self.reason = cell, stalls, reason
        self.logs: list[str] = []

    def __call__(self, args: list[str], log_path: Path, timeout_s: float) -> CellOutcome:
        outcome = super().__call__(args, log_path, timeout_s)
        self.logs.append(log_path.name)
        if _flag(args, "--name").endswith(self.cell) and self.stalls > 0:
            self.stalls -= 1
            run_dir = Path(_flag(args, "--run-dir"))
            data = json.loads((run_dir / "summary.json").read_text())
            data["valid"], data["invalid_reasons"] = False, [self.reason]
            (run_dir / "summary.json").write_text(json.dumps(data))
        return outcome


LAG_REASON = (
    "load generator saturated: client lag p99 16.2 ms > 5 ms (tokens were read late); run "
    "with more --processes or fewer --users (or a lower --rate)"
)


def test_a_transiently_invalid_cell_is_rerun_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, out = _write_config(tmp_path), tmp_path / "sweep"
    fake = StallingRun("c00-l01", stalls=1, reason=LAG_REASON)
    assert main([str(config), "--out", str(out), "--no-svg"], runner=fake) == 0
    assert len(fake.calls) == 7  # six cells, one rerun
    assert "c00-l01.attempt2.log" in fake.logs
    cell = next(c for c in read_manifest(out).cells if c.id == "c00-l01")
    assert (cell.attempts, cell.reruns) == (2, ["client lag p99 16.2 ms"])
    assert (out / "runs" / "c00-l01.attempt1" / "summary.json").exists()  # kept
    assert "c00-l01 invalid (client lag p99 16.2 ms): rerun 1 of 1" in capsys.readouterr().err
    markdown = (out / "report.md").read_text()
    assert "1 cell(s) were rerun after a result invalid for a transient cause" in markdown
    assert "up to 1 rerun(s) per cell" in markdown
    assert "c00-l01 (max-concurrent=4 @ 8): 1 rerun(s) after client lag p99 16.2 ms" in markdown
    assert "Could not trust" not in markdown  # the rerun was valid


def test_reruns_are_bounded_and_the_answer_names_the_untrusted_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write_config(
        tmp_path, CONFIG.replace('name = "demo"', 'name = "demo"\nretries_invalid = 2')
    )
    out = tmp_path / "sweep"
    fake = StallingRun("c00-l00", stalls=99, reason=LAG_REASON)
    assert main([str(config), "--out", str(out), "--no-svg"], runner=fake) == 0
    assert len(fake.calls) == 8  # six cells, two reruns, no more
    cell = next(c for c in read_manifest(out).cells if c.id == "c00-l00")
    assert cell.attempts == 3 and cell.status == "done"
    stdout = capsys.readouterr().out
    assert "max-concurrent=4 @ 4 users: invalid after 2 reruns (client lag p99 16.2 ms)" in stdout
    answer = tmp_path / "capacity.json"
    capacity_main([str(out), "--slo", "ttft_p95<300ms", "--json", str(answer)])
    data = json.loads(answer.read_text())
    four = next(c for c in data["configurations"] if c["configuration"] == "max-concurrent=4")
    assert four["limit_untrusted"] is True and four["untrusted"][0]["load"] == 4.0


def test_a_cell_invalid_for_another_cause_is_not_rerun(tmp_path: Path) -> None:
    config, out = _write_config(tmp_path), tmp_path / "sweep"
    reason = "only 1 of 2 load processes sent their measurements; counts are incomplete"
    fake = StallingRun("c00-l00", stalls=99, reason=reason)
    assert main([str(config), "--out", str(out), "--no-report"], runner=fake) == 0
    assert len(fake.calls) == 6
    assert next(c for c in read_manifest(out).cells if c.id == "c00-l00").attempts == 1


@pytest.mark.parametrize("value", ["-1", "6", "1.5", "true", '"2"'])
def test_retries_invalid_is_bounded(value: str, tmp_path: Path) -> None:
    with pytest.raises(SweepConfigError, match=r"retries_invalid = .* integer from 0 to 5"):
        parse_plan({"duration": "5s", "loads": [1], "retries_invalid": json.loads(value)})


def test_an_out_folder_that_cannot_be_written_is_exit_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was a traceback (FileNotFoundError from mkdir), exit 1."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "sweep"
    assert main([str(_write_config(tmp_path)), "--out", str(out)], runner=FakeRun()) == 2
    assert capsys.readouterr().err == (
        f"surgebench sweep: --out: cannot write the sweep into {str(out)!r} (Not a directory); "
        "allowed: a folder this user can write\n"
    )
