"""Named profiles: partial settings with their sources (see docs/mock_llm.md for the derivations).

A profile sets only the knobs it is about; explicit flags and `SURGE_MOCK_*` variables override it.
"""

from __future__ import annotations

from collections.abc import Mapping

PROFILES: Mapping[str, Mapping[str, object]] = {
    # No delay at all: throughput tests of the harness itself.
    "instant": {"mode": "hosted", "ttft_ms": 0.0, "itl_ms": 0.0},
    # Hosted gpt-4o-class API. Artificial Analysis, GPT-4o (2024-05-13), OpenAI endpoint: median
    # TTFT 0.39 s, 81 tok/s (12.3 ms/token); a 2026 AA median quote: 0.45 s, 131 tok/s (7.6 ms).
    # TTFT p95/p50 of about 3 in community data -> lognormal sigma 0.65
    # [assumption: low confidence].
    "hosted-gpt4o": {
        "mode": "hosted",
        "ttft_ms": 400.0,
        "ttft_sigma": 0.65,
        "itl_ms": 10.0,
        "itl_cv": 0.3,
        "jitter": "lognormal",
        "output_tokens": 300,
        "output_tokens_dist": "lognormal",
        "output_tokens_spread": 0.5,
    },
    # Self-hosted, batched: fitted to NVIDIA NIM benchmarking, Llama-3.1-70B-Instruct v1.3.0
    # (docs.nvidia.com/nim/benchmarking/llm/1.0.0/performance): ITL 13.2 ms at concurrency 1 to
    # 35.3 ms at 250, throughput 75 to 6430 tok/s. Closed loop, 200 output tokens [derived from the
    # table: throughput = C x 200 / (TTFT + 199 x ITL) matches every row within 2%]; 200 prompt
    # tokens [assumption]. benchmarks/mock_profile_fit.py replays the sweep.
    "nim-llama3.1-70b": {
        "mode": "engine",
        "step_base_ms": 12.9,
        "step_per_seq_ms": 0.085,
        "step_per_prefill_token_ms": 0.023,
        "max_batched_tokens": 8192,
        "max_num_seqs": 256,
        "ttft_overhead_ms": 7.5,
        "output_tokens": 200,
    },
}
