"""Named profiles: partial settings with their sources (see docs/mock_llm.md for the derivations).

A profile sets only the knobs it is about; explicit flags and `SURGE_MOCK_*` variables override it.
The engine profiles are the `NAME.toml` files beside this module, each written by `surgebench fit`
from `data/NAME.csv` (a published table with its source line); the command that rebuilds each is
in its header.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

FITTED_DIR = Path(__file__).resolve().parent


def _fitted() -> dict[str, dict[str, object]]:
    return {
        path.stem: tomllib.loads(path.read_text("utf-8"))
        for path in sorted(FITTED_DIR.glob("*.toml"))
    }


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
    **_fitted(),
}
