"""Settings: precedence, profiles, and errors that name the flag, the value and what is allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mock_llm.cli import main
from mock_llm.errors import SettingsError
from mock_llm.profiles import PROFILES
from mock_llm.settings import FIELDS, MockSettings, resolve

pytestmark = pytest.mark.timeout(10)


def test_defaults() -> None:
    s = resolve([], env={})
    assert s == MockSettings()
    assert s.host == "127.0.0.1" and s.ttft_ms == 100.0 and s.itl_ms == 20.0


def test_precedence_defaults_profile_env_flags(tmp_path: Path) -> None:
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps({"ttft_ms": 1, "itl_ms": 2, "output_tokens": 3}))
    env = {"SURGE_MOCK_ITL_MS": "20.5", "SURGE_MOCK_OUTPUT_TOKENS": "30"}
    s = resolve(["--profile", str(prof), "--output-tokens", "300"], env=env)
    assert (s.ttft_ms, s.itl_ms, s.output_tokens) == (1.0, 20.5, 300)
    assert s.max_num_seqs == 0  # untouched default


def test_toml_profile_extends_a_named_one(tmp_path: Path) -> None:
    prof = tmp_path / "p.toml"
    prof.write_text('profile = "nim-llama3.1-70b"\nmax-num-seqs = 64\n')
    s = resolve(["--profile", str(prof)], env={})
    base = PROFILES["nim-llama3.1-70b"]["step_base_ms"]
    assert s.mode == "engine" and s.max_num_seqs == 64 and s.step_base_ms == base


@pytest.mark.parametrize("name", list(PROFILES))
def test_named_profiles_resolve_and_flags_override(name: str) -> None:
    s = resolve(["--profile", name, "--seed", "3"], env={})
    assert s.profile == name and s.seed == 3
    assert resolve(["--profile", name, "--ttft-ms", "7"], env={}).ttft_ms == 7.0


def test_profile_from_env() -> None:
    assert resolve([], env={"SURGE_MOCK_PROFILE": "instant"}).itl_ms == 0.0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["--ttft-ms", "abc"],
            "--ttft-ms: invalid value 'abc' (allowed: a number >= 0 and <= 3600000)",
        ),
        (["--ttft-ms", "nan"], "--ttft-ms: invalid value 'nan'"),
        (
            ["--port", "70000"],
            "--port: invalid value '70000' (allowed: an integer >= 0 and <= 65535)",
        ),
        (["--mode", "gpu"], "--mode: invalid value 'gpu' (allowed: hosted, engine)"),
        (["--text-lang", "fr"], "allowed: en, zh"),
        (["--overflow-status", "500"], "allowed: 429, 503"),
        (["--fault-500-prob", "1.5"], "allowed: a number >= 0 and <= 1"),
        (["--max-num-seqs", "2.5"], "--max-num-seqs: invalid value '2.5'"),
        (["--profile", "nope"], "one of: instant, hosted-gpt4o, nim-llama3.1-70b"),
    ],
)
def test_bad_flag_values(argv: list[str], needle: str) -> None:
    with pytest.raises(SettingsError) as info:
        resolve(argv, env={})
    assert needle in str(info.value)


def test_bad_env_value_names_variable_and_flag() -> None:
    with pytest.raises(SettingsError, match=r"SURGE_MOCK_ITL_MS \(--itl-ms\): invalid value '-1'"):
        resolve([], env={"SURGE_MOCK_ITL_MS": "-1"})


def test_bad_profile_file_value(tmp_path: Path) -> None:
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps({"itl_ms": "fast"}))
    with pytest.raises(SettingsError, match="itl_ms: invalid value 'fast'"):
        resolve(["--profile", str(prof)], env={})
    prof.write_text(json.dumps({"speed": 1}))
    with pytest.raises(SettingsError, match="unknown setting 'speed'"):
        resolve(["--profile", str(prof)], env={})
    prof.write_text("{not json")
    with pytest.raises(SettingsError, match="cannot read profile file"):
        resolve(["--profile", str(prof)], env={})


def test_cli_exit_2_with_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--itl-ms", "-3"]) == 2
    err = capsys.readouterr().err
    assert "--itl-ms" in err and "'-3'" in err and "allowed" in err
    assert main(["--no-such-flag"]) == 2


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag (see surgebench mock --help)"),
        (
            ["--ttft-ms"],
            "--ttft-ms: no value given (a value that starts with '-' is written --ttft-ms=VALUE)",
        ),
    ],
)
def test_argparse_errors_are_one_line(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not argparse's whole usage (25 lines) before the error."""
    assert main(argv) == 2
    assert capsys.readouterr().err == f"surgebench mock: {line}\n"


def test_every_field_has_a_flag_and_help() -> None:
    for name, f in FIELDS.items():
        assert f.metadata.get("help"), name


def test_redacted_hides_api_key() -> None:
    s = resolve(["--api-key", "sekret"], env={})
    assert "sekret" not in repr(s.redacted())


@pytest.mark.parametrize("name", ["nim-llama3.1-70b", "nim-llama3.1-8b", "nim-llama3.3-70b"])
def test_shipped_engine_profiles_are_fit_outputs_of_committed_tables(name: str) -> None:
    """Each engine profile is a `surgebench fit` file whose command names its committed CSV."""
    from mock_llm.profiles import FITTED_DIR

    if not (FITTED_DIR / f"{name}.toml").exists():
        pytest.fail(f"{name}.toml missing from {FITTED_DIR}")
    text = (FITTED_DIR / f"{name}.toml").read_text("utf-8")
    table = FITTED_DIR / "data" / f"{name}.csv"
    assert table.read_text("utf-8").startswith("# NVIDIA NIM for LLMs benchmarking")
    assert f"# Written by: surgebench fit --table mock_llm/profiles/data/{name}.csv" in text
    assert "# MAPE: " in text
    s = resolve(["--profile", name], env={})
    assert s.mode == "engine" and s.step_base_ms > 0


def test_docs_table_is_the_settings_table() -> None:
    from pathlib import Path

    from mock_llm.settings import ENV_PREFIX
    from surgebench.options import settings_table_markdown

    doc = Path(__file__).resolve().parents[3] / "docs" / "mock_llm.md"
    assert settings_table_markdown(MockSettings, ENV_PREFIX) in doc.read_text(encoding="utf-8")


def test_every_numeric_setting_has_finite_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    for name, f in FIELDS.items():
        if type(f.default) in (int, float) and f.metadata["choices"] is None:
            assert f.metadata["lo"] <= f.default <= f.metadata["hi"] < float("inf"), name
    assert main(["--max-num-seqs", "99999999999999999999999"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "<= 1000000" in err and "Traceback" not in err
