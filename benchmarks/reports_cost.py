"""How long the regression gate's noise test and a run report take, by sample count.

Prints a table and one JSON line. Medians of `--repeats` runs. Usage:
    .venv/bin/python benchmarks/reports_cost.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from reports.hdr import decode, encode_samples_ms
from reports.render import write_run_report
from reports.results import read_summary
from reports.stats import bootstrap_stat, mann_whitney

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.unit.reports.synthetic import RunSpec, write_run


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _noise_row(rng: np.random.Generator, samples: int, repeats: int) -> dict[str, float]:
    a = encode_samples_ms(rng.lognormal(4, 0.5, samples))
    b = encode_samples_ms(rng.lognormal(4, 0.5, samples) * 1.05)
    da, db = decode(a), decode(b)
    return {
        "samples_per_run": samples,
        "buckets": len(da.values_ms),
        "decode_s": _median_s(lambda: decode(a), repeats),
        "bootstrap_p95_s": _median_s(lambda: bootstrap_stat(da, db, "p95"), repeats),
        "bootstrap_mean_s": _median_s(lambda: bootstrap_stat(da, db, "mean"), repeats),
        "mann_whitney_s": _median_s(lambda: mann_whitney(da, db), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = [_noise_row(rng, n, args.repeats) for n in (1_000, 100_000, 1_000_000)]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = write_run(Path(tmp), RunSpec(name="bench", requests=2000))
        read_summary(run_dir)
        report_s = _median_s(lambda: write_run_report([run_dir]), args.repeats)
        report_png_s = _median_s(lambda: write_run_report([run_dir], svg=False), args.repeats)
    print(
        f"{'samples/run':>12} {'buckets':>8} {'decode s':>9} {'boot p95 s':>11} "
        f"{'boot mean s':>12} {'MWU s':>7}"
    )
    for row in rows:
        print(
            f"{row['samples_per_run']:>12} {row['buckets']:>8} {row['decode_s']:>9.3f} "
            f"{row['bootstrap_p95_s']:>11.3f} {row['bootstrap_mean_s']:>12.3f} "
            f"{row['mann_whitney_s']:>7.3f}"
        )
    print(f"run report (5 figures): {report_s:.2f} s with SVG, {report_png_s:.2f} s PNG only")
    print(
        json.dumps(
            {"noise_tests": rows, "run_report_s": report_s, "run_report_png_only_s": report_png_s}
        )
    )


if __name__ == "__main__":
    main()
