"""Replay the published NIM Llama-3.1-70B concurrency sweep against the `nim-llama3.1-70b` profile.

Source: docs.nvidia.com/nim/benchmarking/llm/1.0.0/performance, Llama-3.1-70B-Instruct, NIM
v1.3.0, first table (AIPerf, closed loop of C concurrent requests, 200 output tokens [derived],
200 prompt tokens [assumption]). For each concurrency the mock (pinned to CPU 0) is driven by the
uvloop probe (CPU 1) with all C streams started at once, as AIPerf does; the script prints measured
vs published ITL, output throughput and TTFT with % error, plus two points past the table
(C = 300, 400) that show the plateau at max_num_seqs = 256 and the queueing growth of TTFT.

    python benchmarks/mock_profile_fit.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from urllib.parse import urlsplit

import uvloop

# This folder holds benchmarks/mock_llm.py, named like the package: keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from mock_llm.probe import chat_request, run_probe  # noqa: E402
from surgebench.process import ServerProcess, surgebench_argv  # noqa: E402

# concurrency: (TTFT ms, ITL ms, output tokens/s), NIM v1.3.0 Llama-3.1-70B-Instruct, table 1
PUBLISHED: dict[int, tuple[float, float, float]] = {
    1: (25.05, 13.21, 75.36),
    5: (64.82, 12.64, 387.55),
    25: (146.11, 15.31, 1564.9),
    50: (169.61, 17.42, 2743.6),
    100: (235.17, 23.28, 4092.34),
    150: (511.21, 27.73, 4962.78),
    200: (582.07, 31.22, 5855.9),
    250: (718.98, 35.25, 6429.95),
}
BEYOND = (300, 400)


def pct(measured: float, published: float) -> float:
    return (measured - published) / published * 100.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="nim-llama3.1-70b")
    p.add_argument("--prompt-tokens", type=int, default=200)
    p.add_argument("--output-tokens", type=int, default=200)
    p.add_argument("--concurrency", default=",".join(str(c) for c in [*PUBLISHED, *BEYOND]))
    p.add_argument("--cycles", type=float, default=2.5, help="measured window in request times")
    args = p.parse_args(argv)
    os.sched_setaffinity(0, {1})
    print(f"load average before: {os.getloadavg()}", flush=True)
    argv_mock = surgebench_argv(
        "mock", "--port", "0", "--profile", args.profile, "--output-tokens-dist", "max_tokens"
    )
    # 4 chars per token, plus 4 tokens of message overhead (see openai_api.count_tokens)
    prompt = "abcd" * (args.prompt_tokens - 4)
    rows: list[dict[str, float]] = []
    for conc in [int(c) for c in args.concurrency.split(",")]:
        with ServerProcess(argv_mock, cpu_affinity=[0]) as proc:
            parts = urlsplit(proc.url)
            assert parts.hostname is not None and parts.port is not None
            itl_guess = PUBLISHED.get(conc, PUBLISHED[250])[1] / 1000.0
            request_s = (args.output_tokens * itl_guess) * max(1.0, conc / 256)
            req = chat_request(
                parts.hostname, parts.port, max_tokens=args.output_tokens, prompt=prompt
            )
            res = uvloop.run(
                run_probe(
                    parts.hostname,
                    parts.port,
                    conc,
                    ramp_s=0.0,
                    warmup_s=1.5 * request_s,
                    measure_s=max(5.0, args.cycles * request_s),
                    request=req,
                )
            )
        row = {
            "concurrency": conc,
            "itl_ms": statistics.fmean(res.gaps_s) * 1000.0,
            "tokens_per_s": res.chunks_per_s,
            "ttft_ms": statistics.fmean(res.ttft_s) * 1000.0 if res.ttft_s else float("nan"),
            "requests": res.requests_done,
        }
        rows.append(row)
        print(json.dumps({k: round(v, 2) for k, v in row.items()}), flush=True)
    print()
    print(
        f"Profile {args.profile}, ISL {args.prompt_tokens} / OSL {args.output_tokens}, "
        f"closed loop, 1 run per point; load average after: {os.getloadavg()}"
    )
    print(
        "| C | ITL ms mock / NIM (err) | output tok/s mock / NIM (err) | TTFT ms mock / NIM (err) |"
    )
    print("|---|---|---|---|")
    errs_itl, errs_tput = [], []
    for r in rows:
        c = int(r["concurrency"])
        if c in PUBLISHED:
            ttft, itl, tput = PUBLISHED[c]
            e_itl, e_tput = pct(r["itl_ms"], itl), pct(r["tokens_per_s"], tput)
            errs_itl.append(abs(e_itl))
            errs_tput.append(abs(e_tput))
            print(
                f"| {c} | {r['itl_ms']:.2f} / {itl:.2f} ({e_itl:+.1f}%) "
                f"| {r['tokens_per_s']:,.0f} / {tput:,.0f} ({e_tput:+.1f}%) "
                f"| {r['ttft_ms']:.0f} / {ttft:.0f} ({pct(r['ttft_ms'], ttft):+.0f}%) |"
            )
        else:
            print(
                f"| {c} (past the table) | {r['itl_ms']:.2f} / - | {r['tokens_per_s']:,.0f} / - "
                f"| {r['ttft_ms']:.0f} / - |"
            )
    summary = {
        "benchmark": "mock_profile_fit",
        "profile": args.profile,
        "max_abs_err_itl_pct": round(max(errs_itl), 1) if errs_itl else None,
        "max_abs_err_throughput_pct": round(max(errs_tput), 1) if errs_tput else None,
        "rows": [{k: round(v, 2) for k, v in r.items()} for r in rows],
    }
    print(
        f"max |error|: ITL {summary['max_abs_err_itl_pct']}%, "
        f"throughput {summary['max_abs_err_throughput_pct']}%"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
