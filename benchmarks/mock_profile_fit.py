"""How well the fitted engine profiles reproduce the published tables they come from.

Three parts, each printing a Markdown table and a JSON line:

    python benchmarks/mock_profile_fit.py                # replay: every shipped profile vs its CSV
    python benchmarks/mock_profile_fit.py --roundtrip    # known profile -> sweep -> fit back
    python benchmarks/mock_profile_fit.py --live         # the real server, over HTTP (70B table)
    python benchmarks/mock_profile_fit.py --refit        # rerun `surgebench fit` on each CSV (slow)
    python benchmarks/mock_profile_fit.py --protocols    # 3.1-70B profile under each protocol

replay: each shipped profile (mock_llm/profiles/NAME.toml, written by `surgebench fit` from
mock_llm/profiles/data/NAME.csv) is replayed on the mock's scheduler under a fake clock, with the
table's protocol (closed loop of C users started at once; each row's warm-up, then 3 request
times measured, or the requests completed in its `window_s`, or genai-perf's procedure at its
`measurement_interval_ms`), and compared with the published
TTFT, ITL and output throughput: error per point and the mean absolute percentage error (MAPE)
per metric.

roundtrip: a known engine profile is measured (in-process, same replay) at 5 concurrencies and 2
prompt lengths, written as a `surgebench sweep` folder (summary.json per cell), fitted back with
`surgebench fit --sweep`, and the recovered coefficients are compared with the known ones.

protocols: the `nim-llama3.1-70b` profile replayed against its table as each way of measuring
would read it (burst of 3 request times, steady state, the CSV's 17 s window, genai-perf's
procedure at several --measurement-interval values): how much the protocol decides TTFT.

live: the `nim-llama3.1-70b` profile served by `surgebench mock` (pinned to CPU 0) and driven over
HTTP by the uvloop probe (CPU 1), all C streams started at once, as AIPerf does, measured over
3 request times from the start (the probe has no completed-requests window: the table's 17 s
window is not what it measures, so its figures are compared with the replay's, not the table's).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

# This folder holds benchmarks/mock_llm.py, named like the package: keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from mock_llm.fit import (  # noqa: E402
    MEASURE_REQUESTS,
    WARMUP_REQUESTS,
    FitResult,
    Point,
    predict,
    predict_all,
    with_coefficients,
)
from mock_llm.fit_cli import parse_table  # noqa: E402
from mock_llm.profiles import FITTED_DIR  # noqa: E402
from mock_llm.settings import MockSettings, resolve  # noqa: E402

TABLES = ("nim-llama3.1-70b", "nim-llama3.1-8b", "nim-llama3.3-70b")
METRICS = ("ttft_ms", "itl_ms", "tokens_per_s")
# BLIS (inference-sim) reports 17.6 % to 22.8 % TTFT error against real vLLM runs.
BLIS_TTFT_ERROR_PCT = (17.6, 22.8)


def pct(got: float, want: float) -> float:
    return (got - want) / want * 100.0


def load(name: str) -> tuple[MockSettings, list[Point]]:
    points, _ = parse_table((FITTED_DIR / "data" / f"{name}.csv").read_text("utf-8"), name)
    return resolve(["--profile", name], env={}), points


def print_result(name: str, result: FitResult) -> dict[str, object]:
    print(f"\n{name}: {len(result.points)} points")
    print("| C | ISL/OSL | TTFT ms table / mock (err) | ITL ms table / mock (err) "
          "| output tok/s table / mock (err) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for i, p in enumerate(result.points):
        q = result.predicted[i]
        print(
            f"| {p.concurrency} | {p.prompt_tokens}/{p.output_tokens} "
            f"| {p.ttft_ms:,.1f} / {q.ttft_ms:,.1f} ({result.error_pct(i, 'ttft_ms'):+.1f}%) "
            f"| {p.itl_ms:.2f} / {q.itl_ms:.2f} ({result.error_pct(i, 'itl_ms'):+.1f}%) "
            f"| {p.tokens_per_s:,.0f} / {q.tokens_per_s:,.0f} "
            f"({result.error_pct(i, 'tokens_per_s'):+.1f}%) |"
        )
    row = {
        "table": name,
        **{f"mape_{m}": round(result.mape(m), 1) for m in METRICS},
        **{f"max_abs_err_{m}": round(result.max_abs_error_pct(m), 1) for m in METRICS},
    }
    print(
        "MAPE: "
        + ", ".join(f"{m} {row[f'mape_{m}']}%" for m in METRICS)
        + "; max |error|: "
        + ", ".join(f"{m} {row[f'max_abs_err_{m}']}%" for m in METRICS)
    )
    return row


def replay() -> int:
    rows = []
    for name in TABLES:
        settings, points = load(name)
        t0 = time.perf_counter()
        pred = predict_all(settings, points)
        result = FitResult({}, points, pred, math.nan, len(points))
        row = print_result(name, result)
        row["replay_s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
    print("\n| table | points | MAPE TTFT | MAPE ITL | MAPE throughput | max abs TTFT err |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['table']} | - | {r['mape_ttft_ms']}% | {r['mape_itl_ms']}% "
            f"| {r['mape_tokens_per_s']}% | {r['max_abs_err_ttft_ms']}% |"
        )
    print(f"(BLIS reports {BLIS_TTFT_ERROR_PCT[0]}-{BLIS_TTFT_ERROR_PCT[1]}% TTFT error)")
    print(json.dumps({"benchmark": "mock_profile_fit", "part": "replay", "rows": rows}))
    return 0


# (label, Point fields): the ways a row may have been measured, for `protocols`
NO_WINDOW = {"window_s": 0.0}
PROTOCOLS: tuple[tuple[str, dict[str, float]], ...] = (
    ("burst, 3 request times", NO_WINDOW),
    ("steady state (2 request times of warm-up)", NO_WINDOW | {"warmup_requests": 2.0}),
    ("17 s window (the CSV's)", {}),
    *(
        (f"genai-perf, interval {ms:g} ms{why}", NO_WINDOW | {"measurement_interval_ms": ms})
        for ms, why in (
            (4722.0, " (17 s in 3 windows)"),
            (5000.0, " (perf_analyzer's default)"),
            (10000.0, " (genai-perf's default)"),
            (100000.0, ""),
        )
    ),
)


def protocols() -> int:
    settings, points = load("nim-llama3.1-70b")
    rows = []
    print("| protocol | TTFT MAPE | TTFT worst | ITL worst | tok/s worst | replay s |")
    print("|---|---|---|---|---|---|")
    for label, fields in PROTOCOLS:
        measured = [replace(p, **fields) for p in points]  # type: ignore[arg-type]
        t0 = time.perf_counter()
        result = FitResult({}, measured, predict_all(settings, measured), math.nan, 0)
        replay_s = time.perf_counter() - t0
        worst = {m: result.max_abs_error_pct(m) for m in METRICS}
        print(
            f"| {label} | {result.mape('ttft_ms'):.1f} % | {worst['ttft_ms']:.1f} % "
            f"| {worst['itl_ms']:.1f} % | {worst['tokens_per_s']:.1f} % | {replay_s:.1f} |",
            flush=True,
        )
        rows.append({"protocol": label, "mape_ttft_ms": round(result.mape("ttft_ms"), 1)}
                    | {f"max_abs_err_{m}": round(v, 1) for m, v in worst.items()})  # fmt: skip
    print(json.dumps({"benchmark": "mock_profile_fit", "part": "protocols", "rows": rows}))
    return 0


def roundtrip() -> int:
    from reports.results import LatencyStats, Summary, write_summary
    from reports.sweeps import SweepCell, SweepManifest, write_manifest

    known = {
        "step_base_ms": 12.0,
        "step_per_seq_ms": 0.09,
        "step_per_prefill_token_ms": 0.03,
        "ttft_overhead_ms": 6.0,
        "step_per_kv_token_ms": 0.0002,
    }
    # one sweep folder has one prompt length, so the per-sequence and the per-context-token costs
    # move together inside it: each folder's fit frees one of them and is given the other
    free_of = {
        128: "step_base_ms,step_per_seq_ms,step_per_prefill_token_ms",
        1024: "step_base_ms,step_per_kv_token_ms,step_per_prefill_token_ms",
    }
    given_of = {
        128: f"step_per_kv_token_ms={known['step_per_kv_token_ms']}",
        1024: f"step_per_seq_ms={known['step_per_seq_ms']}",
    }
    truth = with_coefficients(
        replace(MockSettings(), max_batched_tokens=2048, max_num_seqs=256), known
    )
    osl = 64
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep"
        cells = []
        for isl in (128, 1024):
            cfg = f"isl={isl}"
            for c in (1, 4, 16, 32, 64):
                q = predict(truth, c, isl, osl)
                cell_id = f"{cfg}-c{c}"
                run_dir = sweep / "runs" / cell_id / "run"
                requests = round(q.tokens_per_s * 60.0 / osl)
                write_summary(
                    run_dir,
                    Summary(
                        name=cell_id,
                        started_at="2026-01-01T00:00:00Z",
                        duration_s=60.0,
                        measured_s=60.0,
                        outcomes={"ok": requests},
                        output_tokens=requests * osl,
                        latency={
                            "ttft_ms": LatencyStats(count=requests, mean=q.ttft_ms),
                            "itl_ms": LatencyStats(count=requests, mean=q.itl_ms),
                        },
                    ),
                )
                cells.append(SweepCell(cell_id, cfg, c, "done", f"runs/{cell_id}/run"))
        # one sweep folder per prompt length (a sweep has one ISL per configuration): fit the
        # long-prompt one with the overhead known, then check both
        results = {}
        for isl in (128, 1024):
            cfg = f"isl={isl}"
            folder = Path(tmp) / cfg
            write_manifest(
                folder,
                SweepManifest(
                    name=cfg,
                    load_kind="users",
                    loads=[1, 4, 16, 32, 64],
                    configurations=[{"name": cfg, "settings": {}}],
                    cells=[
                        replace(c, run_dir=str(sweep / (c.run_dir or "")))
                        for c in cells
                        if c.configuration == cfg
                    ],
                ),
            )
            out = Path(tmp) / f"{cfg}.toml"
            cmd = [
                sys.executable, "-m", "surgebench", "fit", "--sweep", str(folder),
                "--isl", str(isl), "--out", str(out), "--prefill-policy", "mixed",
                "--fix", "ttft_overhead_ms=6", "--fix", "max_batched_tokens=2048",
                "--fix", "max_num_seqs=256", "--max-evals", "150", "--rounds", "2",
                "--free", free_of[isl], "--fix", given_of[isl],
            ]  # fmt: skip
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            fitted = resolve(["--profile", str(out)], env={})
            results[isl] = (fitted, time.perf_counter() - t0)
    print("\n| coefficient | known | fitted (ISL 128) | err | fitted (ISL 1024) | err |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for name, value in known.items():
        if name == "ttft_overhead_ms":
            continue
        columns = []
        for isl in (128, 1024):
            if name not in free_of[isl]:
                columns.append("given | -")
                continue
            got = getattr(results[isl][0], name)
            worst = max(worst, abs(pct(got, value)))
            columns.append(f"{got} | {pct(got, value):+.1f}%")
        print(f"| {name} | {value} | {' | '.join(columns)} |")
    print(
        f"worst coefficient error {worst:.1f}%; "
        f"fit times {[round(r[1]) for r in results.values()]} s"
    )
    print(json.dumps({"benchmark": "mock_profile_fit", "part": "roundtrip", "worst_pct": worst}))
    return 0


def refit() -> int:
    for name in TABLES:
        header = (FITTED_DIR / f"{name}.toml").read_text("utf-8").splitlines()
        line = next(h for h in header if h.startswith("# Written by: surgebench fit "))
        args = line.removeprefix("# Written by: surgebench fit ").split()
        with tempfile.TemporaryDirectory() as tmp:
            out = str(Path(tmp) / f"{name}.toml")
            args[args.index("--out") + 1] = out
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "surgebench", "fit", *args], check=True)
            print(f"{name}: refitted in {time.perf_counter() - t0:.0f} s")
    return 0


def live() -> int:
    import uvloop

    from mock_llm.probe import chat_request, run_probe
    from surgebench.process import ServerProcess, surgebench_argv

    os.sched_setaffinity(0, {1})
    print(f"load average before: {os.getloadavg()}", flush=True)
    settings, points = load("nim-llama3.1-70b")
    # the probe measures 3 request times from the burst: replay the same (not the table's window)
    points = [replace(p, window_s=0.0) for p in points]
    argv_mock = surgebench_argv(
        "mock", "--port", "0", "--profile", "nim-llama3.1-70b", "--output-tokens-dist", "max_tokens"
    )
    pred = predict_all(settings, points)
    print("| C | TTFT ms NIM / replay / live | ITL ms NIM / replay / live "
          "| tok/s NIM / replay / live |")  # fmt: skip
    print("|---|---|---|---|")
    rows = []
    for p, q in zip(points, pred, strict=True):
        # 4 chars per token, plus 4 tokens of message overhead (see openai_api.count_tokens)
        prompt = "abcd" * (p.prompt_tokens - 4)
        with ServerProcess(argv_mock, cpu_affinity=[0]) as proc:
            parts = urlsplit(proc.url)
            assert parts.hostname is not None and parts.port is not None
            request_s = (q.ttft_ms + (p.output_tokens - 1) * q.itl_ms) / 1000.0
            req = chat_request(
                parts.hostname, parts.port, max_tokens=p.output_tokens, prompt=prompt
            )
            res = uvloop.run(
                run_probe(
                    parts.hostname,
                    parts.port,
                    p.concurrency,
                    ramp_s=0.0,
                    warmup_s=WARMUP_REQUESTS * request_s,
                    measure_s=MEASURE_REQUESTS * request_s,
                    request=req,
                )
            )
        ttft = statistics.fmean(res.ttft_s) * 1000.0 if res.ttft_s else math.nan
        itl = statistics.fmean(res.gaps_s) * 1000.0
        tput = res.chunks_per_s
        rows.append({"c": p.concurrency, "ttft_ms": ttft, "itl_ms": itl, "tokens_per_s": tput})
        print(
            f"| {p.concurrency} | {p.ttft_ms:.0f} / {q.ttft_ms:.0f} / {ttft:.0f} "
            f"({pct(ttft, p.ttft_ms):+.1f}%) | {p.itl_ms:.2f} / {q.itl_ms:.2f} / {itl:.2f} "
            f"({pct(itl, p.itl_ms):+.1f}%) | {p.tokens_per_s:,.0f} / {q.tokens_per_s:,.0f} / "
            f"{tput:,.0f} ({pct(tput, p.tokens_per_s):+.1f}%) |",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()}")
    print(json.dumps({"benchmark": "mock_profile_fit", "part": "live", "rows": rows}))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--roundtrip", action="store_true")
    g.add_argument("--live", action="store_true")
    g.add_argument("--refit", action="store_true")
    g.add_argument("--protocols", action="store_true")
    args = p.parse_args(argv)
    print(f"load average: {os.getloadavg()}", flush=True)
    if args.roundtrip:
        return roundtrip()
    if args.live:
        return live()
    if args.refit:
        return refit()
    if args.protocols:
        return protocols()
    return replay()


if __name__ == "__main__":
    raise SystemExit(main())
