"""`surgebench run`'s own errors: a server that refused its pass-through flags, a run folder that
cannot be made. Each is one line naming the flag the user typed, exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.cli import main
from loadtests.runner import RunError, make_run_dir, passthrough_refusal, shape_note
from loadtests.settings import parse_run_args
from surgebench.process import ServerStartError

pytestmark = pytest.mark.timeout(30)


def refused(output: str) -> ServerStartError:
    return ServerStartError("did not print 'listening on http://...'", 2, output)


@pytest.mark.parametrize(
    ("command", "output", "line"),
    [
        (
            "mock",
            "surgebench mock: --ttft-ms: invalid value 'abc' (allowed: a number >= 0 and <= 9)\n",
            "--mock-ttft-ms: invalid value 'abc' (allowed: a number >= 0 and <= 9)",
        ),
        (
            "serve",
            "surgebench serve: --max-concurrent: invalid value '-1' (allowed: an integer >= 1)\n",
            "--service-max-concurrent: invalid value '-1' (allowed: an integer >= 1)",
        ),
        (
            "mock",
            "surgebench mock: unrecognized arguments: --nonexistent 3 (see surgebench mock --help)",
            "unrecognized arguments: --mock-nonexistent 3 (see surgebench mock --help: its --FLAG "
            "is --mock-FLAG here)",
        ),
        (
            "serve",
            "surgebench serve: SURGE_SERVICE_QUEUE_SIZE (--queue-size): invalid value '-1'",
            "SURGE_SERVICE_QUEUE_SIZE (--service-queue-size): invalid value '-1'",
        ),
    ],
)
def test_a_refused_flag_is_named_as_the_user_typed_it(command: str, output: str, line: str) -> None:
    assert passthrough_refusal(command, refused(output)) == line


def test_other_output_is_no_refusal() -> None:
    assert passthrough_refusal("mock", refused("Traceback (most recent call last):\n")) is None


@pytest.mark.parametrize("flag", ["--out", "--run-dir"])
def test_a_run_folder_that_cannot_be_made_is_exit_2(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    where = str(blocker / "sub")
    with pytest.raises(RunError) as info:
        make_run_dir(parse_run_args([flag, where]))
    assert info.value.exit_code == 2
    assert str(info.value) == (
        f"{flag}: cannot create a run folder in {where!r} (Not a directory); allowed: a folder "
        "this user can write"
    )
    assert main([flag, where, "--duration", "1s"]) == 2  # before any server starts
    err = capsys.readouterr().err
    assert err.startswith(f"surgebench run: {flag}: cannot create") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "note"),
    [
        # `make run ARGS="--duration 20s"`: the demo never spikes, and said nothing about it
        (["--duration", "20s"], "note: --duration 20s ends before the spike to 24 users at 25 s: "
         "this run stays at 8 users (the whole spike needs --duration 40s)"),
        (["--shape", "step:2:2:10:10", "--duration", "30s"],
         "note: --duration 30s ends the step shape at 6 of its 10 users"),
        (["--shape", "sweep:1,2,3:10", "--duration", "15s"],
         "note: --duration 15s ends the sweep shape after 2 of its 3 levels (2 users)"),
        (["--duration", "60s"], None),
        (["--duration", "30s"], None),  # the spike starts: the run shows it
        (["--shape", "step:2:2:10:10", "--duration", "50s"], None),
        (["--shape", "sweep:1,2,3:10", "--duration", "30s"], None),
        (["--users", "3", "--duration", "5s"], None),
    ],
)  # fmt: skip
def test_a_shape_cut_short_by_the_duration_is_noted(argv: list[str], note: str | None) -> None:
    assert shape_note(parse_run_args(argv)) == note


def test_console_table_has_no_header_without_rows() -> None:
    from loadtests.cli import console_table
    from loadtests.recorder import Recorder
    from loadtests.summary import RunInfo, build_summary

    info = RunInfo(name="t", started_at="2026-12-01T00:00:00Z", start_epoch_s=0.0, duration_s=1.0)
    text = console_table(build_summary(Recorder(), info, measured_s=1.0))
    assert "p50" not in text and text.startswith("requests 0 (none)")
