"""Real genai-perf against the live mock, beside `surgebench fit`'s replay of its procedure.

    python benchmarks/genai_perf_replay.py --venv /tmp/gp/v            # the default cells
    python benchmarks/genai_perf_replay.py --venv /tmp/gp/v --cells 5000:150,5000:150

`surgebench fit` replays perf_analyzer's time-windows procedure on the mock's scheduler under a
fake clock (`mock_llm.fit._predict_perf_analyzer`). This runs the real thing: `surgebench mock
--profile nim-llama3.1-70b` (pinned to CPU 0) measured by genai-perf (pinned to CPU 1), with the
NIM guide's arguments (200 prompt tokens by genai-perf's tokenizer, 200 output tokens with
`ignore_eos`, `--max-threads=256`), one run per (interval ms, concurrency) cell, and prints
genai-perf's TTFT, ITL and output throughput beside the replay of the same profile, lengths and
protocol. genai-perf counts output tokens with its own tokenizer (about 204 for the mock's 200):
its ITL and throughput are converted to the mock's 200 tokens. The mock counts the prompt as
about 4 characters a token (271 tokens for genai-perf's 200), and the replay uses that count.

The genai-perf of the NIM v1.3.0 era needs a venv of its own (its dependencies are not the
project's), and perf_analyzer, a C++ binary shipped inside tritonclient's manylinux wheels up to
2.51 with two shared libraries it does not bundle:

    python3 -m venv /tmp/gp/v
    /tmp/gp/v/bin/pip install "genai-perf==0.0.8" "tritonclient[all]==2.51.0" \\
        nvidia-cuda-runtime-cu12                        # libcudart.so.12 (no GPU is used)
    apt-get install libb64-0d                            # libb64.so.0d

and a local tokenizer folder (`--tokenizer DIR` with tokenizer.json and tokenizer_config.json;
the machine has no access to the Hugging Face hub).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# This folder holds benchmarks/mock_llm.py, named like the package: keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from mock_llm.fit import predict  # noqa: E402
from mock_llm.openai_api import count_tokens_chars  # noqa: E402
from mock_llm.settings import resolve  # noqa: E402
from surgebench.process import ServerProcess, surgebench_argv  # noqa: E402

PROFILE = "nim-llama3.1-70b"
OUTPUT_TOKENS = 200
DEFAULT_CELLS = "5000:1,5000:25,5000:100,5000:150,5000:250,10000:25,10000:150"
RUN_TIMEOUT_S = 300


def parse_cells(text: str) -> list[tuple[int, int]]:
    cells = []
    for item in text.split(","):
        interval, _, users = item.partition(":")
        if not (interval.isdigit() and users.isdigit() and int(users) >= 1):
            raise SystemExit(f"--cells: {item!r}; allowed: INTERVAL_MS:CONCURRENCY,...")
        cells.append((int(interval), int(users)))
    return cells


def genai_perf(
    venv: Path, tokenizer: str, url: str, interval_ms: int, users: int, out: Path
) -> Path:
    lib = next(venv.glob("lib/python3*/site-packages/nvidia/cuda_runtime/lib"), None)
    env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    if lib is not None:
        env["LD_LIBRARY_PATH"] = str(lib)
    argv = ["taskset", "-c", "1", str(venv / "bin" / "genai-perf"), "profile", "-m", "mock"]
    argv += ["--endpoint-type", "chat", "--service-kind", "openai", "--streaming", "-u", url]
    argv += ["--synthetic-input-tokens-mean", "200", "--synthetic-input-tokens-stddev", "0"]
    argv += ["--output-tokens-mean", str(OUTPUT_TOKENS)]
    for extra in (f"max_tokens:{OUTPUT_TOKENS}", f"min_tokens:{OUTPUT_TOKENS}", "ignore_eos:true"):
        argv += ["--extra-inputs", extra]
    argv += ["--concurrency", str(users), "--measurement-interval", str(interval_ms)]
    argv += ["--tokenizer", tokenizer, "--artifact-dir", str(out), "--", "-v", "--max-threads=256"]
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=RUN_TIMEOUT_S)
    return out


def mock_prompt_tokens(inputs: dict[str, Any]) -> int:
    """The mock's mean count of genai-perf's prompts (its chat parser's: the characters' tokens
    plus 4 per message)."""
    counts = []
    for row in inputs["data"]:
        messages = row["payload"][0]["messages"]
        counts.append(
            count_tokens_chars(sum(len(m["content"]) for m in messages)) + 4 * len(messages)
        )
    return round(statistics.fmean(counts))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--venv", type=Path, required=True, help="genai-perf's venv (see above)")
    p.add_argument("--tokenizer", default="/tmp/u-peers/tok", help="local tokenizer folder")
    p.add_argument("--cells", default=DEFAULT_CELLS, help="INTERVAL_MS:CONCURRENCY,...")
    args = p.parse_args(argv)
    cells = parse_cells(args.cells)
    settings = resolve(["--profile", PROFILE], env={})
    print(f"load average before: {os.getloadavg()}", flush=True)
    argv_mock = surgebench_argv(
        "mock", "--port", "0", "--profile", PROFILE, "--output-tokens-dist", "max_tokens"
    )
    print("| interval ms | C | windows | TTFT ms genai-perf / replay (err) | ITL ms "
          "| output tok/s |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(argv_mock, cpu_affinity=[0]) as mock:
        parts = urlsplit(mock.url)
        url = f"{parts.hostname}:{parts.port}"
        for n, (interval_ms, users) in enumerate(cells):
            out = genai_perf(args.venv, args.tokenizer, url, interval_ms, users, Path(tmp) / str(n))
            stats = json.loads((out / "profile_export_genai_perf.json").read_text("utf-8"))
            raw = json.loads((out / "profile_export.json").read_text("utf-8"))
            windows = len(raw["experiments"][0]["window_boundaries"]) - 1
            isl = mock_prompt_tokens(json.loads((out / "inputs.json").read_text("utf-8")))
            osl = stats["output_sequence_length"]["avg"]
            ttft = stats["time_to_first_token"]["avg"]
            itl = stats["inter_token_latency"]["avg"] * (osl - 1) / (OUTPUT_TOKENS - 1)
            tput = stats["output_token_throughput"]["avg"] * OUTPUT_TOKENS / osl
            q = predict(settings, users, isl, OUTPUT_TOKENS, measurement_interval_ms=interval_ms)

            def err(measured: float, replayed: float) -> str:
                return f"{(replayed / measured - 1) * 100:+.1f} %"

            print(
                f"| {interval_ms} | {users} | {windows} | {ttft:.1f} / {q.ttft_ms:.1f} "
                f"({err(ttft, q.ttft_ms)}) | {itl:.2f} / {q.itl_ms:.2f} ({err(itl, q.itl_ms)}) "
                f"| {tput:,.0f} / {q.tokens_per_s:,.0f} ({err(tput, q.tokens_per_s)}) |",
                flush=True,
            )
            row: dict[str, object] = {"interval_ms": interval_ms, "c": users, "windows": windows}
            row["isl_mock"] = isl
            row["ttft_ms"] = [round(ttft, 1), round(q.ttft_ms, 1)]
            row["itl_ms"] = [round(itl, 2), round(q.itl_ms, 2)]
            row["tokens_per_s"] = [round(tput), round(q.tokens_per_s)]
            rows.append(row)
    print(f"load average after: {os.getloadavg()}")
    print(json.dumps({"benchmark": "genai_perf_replay", "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
