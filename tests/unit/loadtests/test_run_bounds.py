"""`surgebench run`: each count, rate and time flag has an upper bound; beyond: one line, exit 2."""

from __future__ import annotations

import pytest

from loadtests.cli import main
from loadtests.settings import RUN_BOUNDS, RunSettings, parse_run_args

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--rate", "nan"], "--rate: invalid value nan (allowed: a number > 0 and <= 10000)"),
        (["--rate", "inf"], "--rate: invalid value inf"),
        (["--rate=-inf"], "--rate: invalid value -inf"),
        (["--spawn-rate", "nan"], "--spawn-rate: invalid value nan"),
        (["--users", "99999999999999999999999"], "--users: invalid value 99999999999999999999999"),
        (["--processes", "100000"], "(allowed: an integer >= 1 and <= 256)"),
        (["--slo-ttft-ms", "nan"], "--slo-ttft-ms: invalid value nan"),
        (["--max-cpu-percent", "inf"], "--max-cpu-percent: invalid value inf"),
        (["--duration", "99999999999h"], "--duration (in s): invalid value"),
        (["--users", "2", "--think", "2h"], "--think (in s): invalid value 7200.0"),
        (["--users", "2", "--stop-timeout", "99999m"], "--stop-timeout (in s): invalid value"),
    ],
)
def test_out_of_bounds_exits_2_with_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        # argparse's own type errors, in the one-line form with the allowed values
        (
            ["--users", "abc"],
            "--users: invalid value 'abc' (allowed: an integer >= 1 and <= 100000)",
        ),
        (["--seed", "x"], "--seed: invalid value 'x' (allowed: an integer >= 0 and <= "),
        (["--rate", "abc"], "--rate: invalid value 'abc' (allowed: a number > 0 and <= 10000)"),
        # 0 and a negative rate get the same answer (it said ">= 0" for -5, then "> 0" for 0)
        (["--rate", "0"], "--rate: invalid value 0.0 (allowed: a number > 0 and <= 10000)"),
        (["--rate", "-5"], "--rate: invalid value -5.0 (allowed: a number > 0 and <= 10000)"),
        (["--spawn-rate", "0"], "--spawn-rate: invalid value 0.0 (allowed: a number > 0 and <= "),
        # a value that starts with '-' reads as a flag: say how to give it
        (
            ["--duration", "-3s"],
            "--duration: no value given (a value that starts with '-' is written --duration=VALUE)",
        ),
        (["--bogus", "3"], "unrecognized arguments: --bogus 3 (see surgebench run --help)"),
    ],
)
def test_argparse_errors_are_one_line_naming_flag_and_allowed(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"surgebench run: {line}") and err.count("\n") == 1, err


def test_highest_values_are_accepted() -> None:
    s = parse_run_args(["--rate", "10000", "--duration", "168h", "--processes", "256"])
    assert (s.rate, s.duration_s, s.processes) == (10000.0, 604_800.0, 256)


def test_every_numeric_run_setting_has_a_bound() -> None:
    numeric = {
        name
        for name, value in vars(RunSettings()).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    assert numeric <= set(RUN_BOUNDS)
