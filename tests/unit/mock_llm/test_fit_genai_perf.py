"""`surgebench fit --genai-perf DIR`: genai-perf's per-run JSONs as fit points, replayed as
perf_analyzer measured them."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mock_llm.fit import GENAI_PERF_STABILITY_PERCENTAGE, FitError, predict
from mock_llm.fit_cli import main, read_genai_perf
from mock_llm.fit_genai_perf import point_of
from mock_llm.settings import MockSettings, resolve

pytestmark = pytest.mark.timeout(600)

KNOWN = replace(
    MockSettings(),
    mode="engine",
    step_base_ms=10.0,
    step_per_seq_ms=0.5,
    step_per_prefill_token_ms=0.05,
    ttft_overhead_ms=5.0,
    max_batched_tokens=512,
    max_num_seqs=64,
)


def genai_perf_json(
    users: int, ttft_ms: float, itl_ms: float, tokens_per_s: float, **config: Any
) -> dict[str, Any]:
    """The layout genai-perf's JsonExporter writes (2024): statistics by metric, each with a
    unit and avg/percentiles, and the run's arguments under input_config."""

    def stat(unit: str, avg: float) -> dict[str, Any]:
        return {"unit": unit, "avg": avg, "p50": avg, "p99": avg * 1.1, "min": avg, "max": avg}

    return {
        "request_throughput": stat("requests/sec", tokens_per_s / 20),
        "request_latency": stat("ms", ttft_ms + 19 * itl_ms),
        "time_to_first_token": stat("ms", ttft_ms),
        "inter_token_latency": stat("ms", itl_ms),
        "output_token_throughput": {"unit": "per sec", "avg": tokens_per_s},
        "output_token_throughput_per_request": stat("tokens/sec", 1000 / itl_ms),
        "output_sequence_length": stat("tokens", 20.0),
        "input_sequence_length": stat("tokens", 99.6),
        "input_config": {
            "model": ["m"],
            "endpoint_type": "chat",
            "service_kind": "openai",
            "streaming": True,
            "concurrency": users,
            "request_rate": None,
            "measurement_interval": 1000,
            "stability_percentage": 999,
            "synthetic_input_tokens_mean": 100,
            "output_tokens_mean": 20,
            "profile_export_file": "artifacts/profile_export.json",
            **config,
        },
    }


def test_a_genai_perf_json_becomes_a_point_with_its_protocol(tmp_path: Path) -> None:
    point = point_of(genai_perf_json(8, 40.0, 12.0, 600.0), tmp_path / "a_genai_perf.json")
    assert (point.concurrency, point.prompt_tokens, point.output_tokens) == (8, 100, 20)
    assert (point.ttft_ms, point.itl_ms, point.tokens_per_s) == (40.0, 12.0, 600.0)
    assert point.measurement_interval_ms == 1000.0
    assert point.stability_percentage == 999.0
    default = genai_perf_json(8, 40.0, 12.0, 600.0)
    del (
        default["input_config"]["measurement_interval"],
        default["input_config"]["stability_percentage"],
    )
    point = point_of(default, tmp_path / "b_genai_perf.json")
    assert point.measurement_interval_ms == 10_000.0  # genai-perf's defaults
    assert point.stability_percentage == GENAI_PERF_STABILITY_PERCENTAGE


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"streaming": False}, "not streamed"),
        ({"concurrency": None, "request_rate": 5.0}, "not a request rate"),
        ({"request_count": 100}, "input_config.request_count 100"),
        ({"warmup_request_count": 10}, "input_config.warmup_request_count 10"),
        ({"measurement_interval": "soon"}, "measurement_interval_ms nan out of range"),
    ],
)
def test_runs_the_replay_cannot_reproduce_are_refused(
    tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(FitError, match=message):
        point_of(genai_perf_json(8, 40.0, 12.0, 600.0, **config), tmp_path / "x_genai_perf.json")
    newer = genai_perf_json(8, 40.0, 12.0, 600.0)
    newer["input_config"] = {"perf_analyzer": {"stimulus": {"concurrency": 8}}}
    with pytest.raises(FitError, match=r"layout of genai-perf's config files \(2025"):
        point_of(newer, tmp_path / "x_genai_perf.json")
    no_ttft = genai_perf_json(8, 40.0, 12.0, 600.0)
    del no_ttft["time_to_first_token"]
    with pytest.raises(FitError, match=r"no positive time_to_first_token\.avg"):
        point_of(no_ttft, tmp_path / "x_genai_perf.json")


def test_a_folder_of_runs_and_its_errors(tmp_path: Path) -> None:
    with pytest.raises(FitError, match=r"no \*_genai_perf\.json"):
        read_genai_perf(tmp_path)
    for c in (16, 1, 4):  # one folder per run, as genai-perf's --artifact-dir does
        run = tmp_path / f"m-openai-chat-concurrency{c}"
        run.mkdir()
        doc = genai_perf_json(c, 40.0, 12.0, 600.0)
        (run / "profile_export_genai_perf.json").write_text(json.dumps(doc), "utf-8")
    points, notes = read_genai_perf(tmp_path)
    assert [p.concurrency for p in points] == [1, 4, 16] and "3 runs" in notes[0]
    again = tmp_path / "again"
    again.mkdir()
    doc = genai_perf_json(4, 40.0, 12.0, 600.0)
    (again / "profile_export_genai_perf.json").write_text(json.dumps(doc), "utf-8")
    with pytest.raises(FitError, match="several runs at one concurrency"):
        read_genai_perf(tmp_path)
    (again / "profile_export_genai_perf.json").write_text("{not json", "utf-8")
    with pytest.raises(FitError, match="not readable as JSON"):
        read_genai_perf(tmp_path)


def test_cli_fits_genai_perf_results_back_to_the_engine_that_made_them(tmp_path: Path) -> None:
    """Results of a known engine measured the genai-perf way (3 windows of 1.2 s from the
    burst), written as genai-perf's JSONs, fitted back: the step cost comes back within 5 %."""
    for c in (1, 4, 16):
        q = predict(KNOWN, c, 100, 20, measurement_interval_ms=1000)
        doc = genai_perf_json(c, q.ttft_ms, q.itl_ms, q.tokens_per_s)
        doc["output_sequence_length"]["avg"] = 20.0
        run = tmp_path / "artifacts" / f"concurrency{c}"
        run.mkdir(parents=True)
        (run / "profile_export_genai_perf.json").write_text(json.dumps(doc), "utf-8")
    out = tmp_path / "fitted.toml"
    args = ["--genai-perf", str(tmp_path / "artifacts"), "--out", str(out)]
    args += ["--free", "step_base_ms", "--prefill-policy", "mixed", "--max-evals", "40"]
    args += ["--fix", "step_per_seq_ms=0.5", "--fix", "step_per_prefill_token_ms=0.05"]
    args += ["--fix", "ttft_overhead_ms=5", "--fix", "max_batched_tokens=512"]
    args += ["--fix", "max_num_seqs=64", "--start", "step_base_ms=14"]
    assert main(args) == 0
    fitted = resolve(["--profile", str(out)])
    assert fitted.step_base_ms == pytest.approx(10.0, rel=0.05)
    text = out.read_text("utf-8")
    assert "genai-perf results in 'artifacts': 3 runs" in text
    # replayed with the runs' own protocol the model meets them; with the burst replay instead
    # (the interval dropped) TTFT would stay 6 % off at C = 16 whatever the step cost
    worst = re.search(r"max \|error\|: ttft_ms ([0-9.]+)%", text)
    assert worst is not None and float(worst.group(1)) < 1.0


@pytest.mark.parametrize("flag", [["--isl", "200"], ["--osl", "50"], ["--configuration", "a"]])
def test_sweep_only_flags_are_refused_with_other_inputs(
    tmp_path: Path, flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--isl/--osl/--configuration say how to read a sweep; beside a table or genai-perf's
    results they would be ignored, so they are refused (exit 2) with the reason."""
    (tmp_path / "r").mkdir()
    doc = genai_perf_json(4, 40.0, 12.0, 600.0)
    (tmp_path / "r" / "p_genai_perf.json").write_text(json.dumps(doc), "utf-8")
    out = tmp_path / "p.toml"
    assert main(["--genai-perf", str(tmp_path), "--out", str(out), *flag]) == 2
    assert f"{flag[0]}: only with --sweep" in capsys.readouterr().err
    assert not out.exists()
