"""`surgebench fit`: read a published table or a sweep folder, fit an engine profile, write it.

    surgebench fit --table nim.csv --out my.toml
    surgebench fit --sweep results/my-sweep --isl 200 --out my.toml

Exit 0 with the profile written and the error per point printed; exit 2 (with the reason) for a
bad flag, unreadable input, or data that cannot determine a free coefficient.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import math
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mock_llm.errors import SettingsError
from mock_llm.fit import (
    BOUNDS,
    DEFAULT_FREE,
    GENAI_PERF_STABILITY_PERCENTAGE,
    MAX_WARMUP_REQUESTS,
    OBJECTIVES,
    FitError,
    FitResult,
    Point,
    fit,
    with_coefficients,
)
from mock_llm.fit_genai_perf import MAX_FILE_BYTES, MAX_FILES, SUFFIX, point_of
from mock_llm.settings import FIELDS, MockSettings, load_profile
from surgebench import options

TABLE_COLUMNS: tuple[str, ...] = ("concurrency", "isl", "osl", "ttft_ms", "itl_ms", "tokens_per_s")
# optional: request times of the closed loop the measurement left out (default 0: no warm-up),
# or a time window from the start whose completed requests were measured (default 0: none)
# optional columns: how a row was measured (see mock_llm.fit.Point), with the value of a blank
OPTIONAL_DEFAULTS: dict[str, float] = {
    "warmup_requests": 0.0,
    "window_s": 0.0,
    "measurement_interval_ms": 0.0,
    "stability_percentage": GENAI_PERF_STABILITY_PERCENTAGE,
}
OPTIONAL_COLUMNS: tuple[str, ...] = tuple(OPTIONAL_DEFAULTS)
MAX_TABLE_BYTES = 1_048_576
MAX_SUMMARY_BYTES = 64 * 1_048_576
POLICIES: tuple[str, ...] = ("mixed", "prefill_first", "both")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line naming the flag (`argparse_message`)
        print(f"surgebench fit: {options.argparse_message(message, self.prog)}", file=sys.stderr)
        raise SystemExit(2)


def _print_progress(started_s: float, evaluations: int, at_most: int, best_loss: float) -> None:
    print(
        f"  {evaluations} of at most {at_most} evaluations, best loss {best_loss:.4f}, "
        f"{time.monotonic() - started_s:.0f} s",
        flush=True,
    )


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="surgebench fit",
        description="Fit an engine-mode mock profile (step cost, prefill cost, frontend overhead) "
        "to closed-loop measurements: a published table (CSV) or a `surgebench sweep` folder of "
        "a users sweep. Writes a TOML profile for `surgebench mock --profile FILE`.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--table",
        metavar="CSV",
        help="CSV with header "
        + ",".join(TABLE_COLUMNS)
        + " (optional columns: "
        + ", ".join(OPTIONAL_COLUMNS)
        + ")",
    )
    src.add_argument("--sweep", metavar="DIR", help="a `surgebench sweep` folder (load = users)")
    src.add_argument(
        "--genai-perf",
        metavar="DIR",
        help="genai-perf's artifacts of a concurrency sweep (every *_genai_perf.json under DIR), "
        "replayed as perf_analyzer measured them",
    )
    p.add_argument("--out", required=True, metavar="FILE.toml", help="profile file to write")
    p.add_argument(
        "--configuration", default="", help="sweep: the configuration to fit (when it has many)"
    )
    p.add_argument("--isl", type=int, default=0, help="sweep: prompt tokens per request")
    p.add_argument("--osl", type=int, default=0, help="sweep: output tokens per request "
                   "(default: output tokens / ok requests of each cell)")  # fmt: skip
    p.add_argument(
        "--base", default="", help="profile (name or file) the fit starts from and keeps"
    )
    p.add_argument(
        "--free",
        default="",
        help=f"coefficients to fit, comma-separated (default {','.join(DEFAULT_FREE)}, less "
        "those given to --fix; "
        f"allowed: {', '.join(BOUNDS)})",
    )
    p.add_argument(
        "--fix",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a mock setting (e.g. max_num_seqs=256) and keep it out of the fit; repeatable",
    )
    p.add_argument(
        "--start",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="where the search starts for a free coefficient (default: from the data); repeatable",
    )
    p.add_argument(
        "--prefill-policy",
        choices=POLICIES,
        default="both",
        help="engine prefill policy to fit; both fits each and keeps the better (default both)",
    )
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="squares",
        help="what the search minimises: squares = the sum of squared log errors (TTFT, ITL x 2, "
        "throughput) plus the worst TTFT error; worst = the largest error of any metric at any "
        "point (minimax) (default squares)",
    )
    p.add_argument("--max-evals", type=int, default=300, help="model evaluations per round")
    p.add_argument("--rounds", type=int, default=2, help="search rounds (each restarts smaller)")
    return p


def _float_cell(raw: str, where: str) -> float:
    text = raw.strip()
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise FitError(f"{where}: {raw!r} is not a number") from None


def _optional(value: float, default: float, column: str, where: str) -> float:
    if math.isnan(value):  # column absent or cell empty
        return default
    if not math.isfinite(value):
        raise FitError(f"{where}: {column} must be a number")
    return value


def parse_table(text: str, source: str) -> tuple[list[Point], list[str]]:
    """Points and the comment lines (`# ...`, the source) of a table CSV."""
    comments = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("#")]
    body = "\n".join(ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))
    rows = list(csv.reader(io.StringIO(body)))
    if not rows:
        raise FitError(f"{source}: no header; expected {','.join(TABLE_COLUMNS)}")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in TABLE_COLUMNS if c not in header]
    if missing:
        raise FitError(f"{source}: missing column(s) {missing}; expected {','.join(TABLE_COLUMNS)}")
    idx = {c: header.index(c) for c in TABLE_COLUMNS + OPTIONAL_COLUMNS if c in header}
    points = []
    for n, row in enumerate(rows[1:], start=2):
        where = f"{source}: data row {n - 1}"
        if len(row) != len(header):
            raise FitError(f"{where}: {len(row)} fields, header has {len(header)}")
        v = {c: _float_cell(row[i], f"{where}, {c}") for c, i in idx.items()}
        for c in ("concurrency", "isl", "osl"):
            if not (math.isfinite(v[c]) and v[c].is_integer()):
                raise FitError(f"{where}: {c} must be a whole number, got {row[idx[c]]!r}")
        points.append(
            Point(
                concurrency=int(v["concurrency"]),
                prompt_tokens=int(v["isl"]),
                output_tokens=int(v["osl"]),
                ttft_ms=v["ttft_ms"],
                itl_ms=v["itl_ms"],
                tokens_per_s=v["tokens_per_s"],
                **{
                    c: _optional(v.get(c, math.nan), default, c, where)
                    for c, default in OPTIONAL_DEFAULTS.items()
                },
            )
        )
        points[-1].check(where)
    return points, comments


def _read_json(path: Path, limit: int) -> dict[str, Any]:
    try:
        if path.stat().st_size > limit:
            raise FitError(f"{path}: larger than {limit} bytes")
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FitError(f"{path}: not readable as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise FitError(f"{path}: expected a JSON object")
    return data


def _mean(summary: Mapping[str, Any], metric: str, where: Path) -> float:
    stats = summary.get(metric)
    value = stats.get("mean") if isinstance(stats, dict) else None
    if not isinstance(value, int | float) or not value > 0:
        raise FitError(f"{where}: no {metric}.mean in summary.json (no streamed tokens?)")
    return float(value)


def sweep_warmup_requests(warmup_s: object, request_ms: float) -> float:
    """The run's warm-up in request times, as the replay takes it.

    A run's users start together (at the default spawn rate) and its first `warmup_s` are left
    out: less than half a request time leaves the burst in the measurement (0); more is a
    steady-state measurement after that many request times (at least 1, at most the limit)."""
    if not isinstance(warmup_s, int | float) or not request_ms > 0:
        return 0.0
    times = 1000.0 * float(warmup_s) / request_ms
    if not math.isfinite(times) or times < 0.5:
        return 0.0
    return float(f"{min(MAX_WARMUP_REQUESTS, max(1.0, times)):.3g}")


def read_sweep(
    sweep_dir: Path, configuration: str, isl: int, osl: int
) -> tuple[list[Point], list[str]]:
    """Points from a users sweep: one per finished cell of `configuration` (summary.json fields)."""
    manifest = _read_json(sweep_dir / "sweep.json", MAX_TABLE_BYTES)
    if manifest.get("load_kind") != "users":
        raise FitError(
            f"{sweep_dir}: a {manifest.get('load_kind')!r} sweep; the fit needs a closed loop "
            "(a sweep with load_kind users, one point per concurrency)"
        )
    names = [str(c.get("name")) for c in manifest.get("configurations", []) if isinstance(c, dict)]
    if configuration and configuration not in names:
        raise FitError(f"--configuration: {configuration!r} not in the sweep; allowed: {names}")
    if not configuration:
        if len(names) != 1:
            raise FitError(f"--configuration: the sweep has {len(names)}; choose one of {names}")
        configuration = names[0]
    if isl < 1:
        raise FitError("--isl: required with --sweep (summary.json does not record prompt tokens)")
    points: list[Point] = []
    notes = [f"sweep {sweep_dir.name!r}, configuration {configuration!r}, ISL {isl} (given)"]
    for cell in manifest.get("cells", []):
        if not isinstance(cell, dict) or cell.get("configuration") != configuration:
            continue
        run_dir = cell.get("run_dir")
        if cell.get("status") != "done" or not isinstance(run_dir, str):
            notes.append(f"cell {cell.get('id')}: skipped ({cell.get('status')})")
            continue
        path = Path(run_dir) if Path(run_dir).is_absolute() else sweep_dir / run_dir
        summary = _read_json(path / "summary.json", MAX_SUMMARY_BYTES)
        if summary.get("valid") is False:
            notes.append(f"cell {cell.get('id')}: skipped (run marked invalid)")
            continue
        ok = (summary.get("outcomes") or {}).get("ok", 0)
        tokens = summary.get("output_tokens", 0)
        cell_osl = osl or (round(tokens / ok) if ok else 0)
        ttft_ms, itl_ms = _mean(summary, "ttft_ms", path), _mean(summary, "itl_ms", path)
        point = Point(
            concurrency=int(cell.get("load", 0)),
            prompt_tokens=isl,
            output_tokens=cell_osl,
            ttft_ms=ttft_ms,
            itl_ms=itl_ms,
            tokens_per_s=float(summary.get("output_tokens_per_s") or math.nan),
            warmup_requests=sweep_warmup_requests(
                summary.get("warmup_s"), ttft_ms + (cell_osl - 1) * itl_ms
            ),
        )
        point.check(f"{path}")
        points.append(point)
    return points, notes


def read_genai_perf(folder: Path) -> tuple[list[Point], list[str]]:
    """Points from every ``*_genai_perf.json`` under `folder` (genai-perf's artifacts folder:
    one subfolder per run), ordered by concurrency; notes name the files read."""
    if not folder.is_dir():
        raise FitError(f"--genai-perf: {folder} is not a folder")
    files = sorted(folder.rglob(f"*{SUFFIX}"))
    if not files:
        raise FitError(f"--genai-perf: no *{SUFFIX} under {folder}")
    if len(files) > MAX_FILES:
        raise FitError(f"--genai-perf: {len(files)} files under {folder}; at most {MAX_FILES}")
    points = [point_of(_read_json(path, MAX_FILE_BYTES), path) for path in files]
    seen = [p.concurrency for p in points]
    if len(set(seen)) != len(seen):
        raise FitError(
            f"--genai-perf: {folder} holds several runs at one concurrency ({sorted(seen)}); "
            "give a folder of one sweep"
        )
    points.sort(key=lambda p: p.concurrency)
    notes = [f"genai-perf results in {folder.name!r}: {len(files)} runs"]
    return points, notes


def _fixed(items: Sequence[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in FIELDS:
            raise FitError(f"--fix: {item!r}; allowed: NAME=VALUE with NAME a mock setting")
        out.update(options.from_mapping(MockSettings, {name: raw.strip()}, "--fix"))
    return out


def error_table(result: FitResult) -> list[str]:
    lines = [
        "| C | ISL | OSL | TTFT ms measured / model (err) | ITL ms measured / model (err) "
        "| output tok/s measured / model (err) |",
        "|---|---|---|---|---|---|",
    ]
    for i, p in enumerate(result.points):
        q = result.predicted[i]
        cells = []
        for metric, fmt in (("ttft_ms", ".1f"), ("itl_ms", ".2f"), ("tokens_per_s", ",.0f")):
            m = getattr(p, metric)
            if math.isnan(m):
                cells.append(f"- / {q.get(metric):{fmt}}")
            else:
                cells.append(
                    f"{m:{fmt}} / {q.get(metric):{fmt}} ({result.error_pct(i, metric):+.1f}%)"
                )
        lines.append(
            f"| {p.concurrency} | {p.prompt_tokens} | {p.output_tokens} | "
            + " | ".join(cells)
            + " |"
        )
    lines.append(
        "MAPE: "
        + ", ".join(f"{m} {result.mape(m):.1f}%" for m in ("ttft_ms", "itl_ms", "tokens_per_s"))
        + "; max |error|: "
        + ", ".join(
            f"{m} {result.max_abs_error_pct(m):.1f}%" for m in ("ttft_ms", "itl_ms", "tokens_per_s")
        )
    )
    return lines


def profile_toml(
    settings: MockSettings, result: FitResult, fixed: Mapping[str, object], header: Sequence[str]
) -> str:
    """The profile file: comments (source, command, errors), then `name = value` lines."""
    lines = [f"# {h}" for h in header]
    lines += [f"# {ln}" for ln in error_table(result)]
    values: dict[str, object] = {"mode": "engine", "prefill_policy": settings.prefill_policy}
    for name in result.coefficients:
        values[name] = getattr(settings, name)
    values.update(fixed)
    osls = {p.output_tokens for p in result.points}
    if "output_tokens" not in values and len(osls) == 1:
        values["output_tokens"] = osls.pop()
    for name, value in values.items():
        if isinstance(value, str):
            lines.append(f'{name} = "{value}"')
        elif isinstance(value, bool):
            lines.append(f"{name} = {str(value).lower()}")
        elif isinstance(value, float):
            lines.append(f"{name} = {float(f'{value:.4g}')!r}")
        else:
            lines.append(f"{name} = {value}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        fixed = _fixed(args.fix)
        free = [n.strip() for n in args.free.split(",") if n.strip()]
        if not args.free:
            free = [n for n in DEFAULT_FREE if n not in fixed]
        clash = sorted(set(free) & set(fixed))
        if clash:
            raise FitError(f"--fix and --free both name {clash}; a coefficient is one or the other")
        if not args.out.endswith(".toml"):
            raise FitError(f"--out: {args.out!r}; allowed: a path ending in .toml")
        if not args.sweep:
            given = [f for f, v in (("--isl", args.isl), ("--osl", args.osl)) if v]
            given += ["--configuration"] if args.configuration else []
            if given:
                raise FitError(
                    f"{', '.join(given)}: only with --sweep (a table and genai-perf's results "
                    "carry their own lengths)"
                )
        if not 1 <= args.rounds <= 10:
            raise FitError(f"--rounds: {args.rounds}; allowed: 1 to 10")
        if not 10 <= args.max_evals <= 10_000:
            raise FitError(f"--max-evals: {args.max_evals}; allowed: 10 to 10000")
        if args.table:
            path = Path(args.table)
            try:
                if path.stat().st_size > MAX_TABLE_BYTES:
                    raise FitError(f"--table: {path} is larger than {MAX_TABLE_BYTES} bytes")
                text = path.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise FitError(f"--table: cannot read {path}: {exc}") from None
            points, notes = parse_table(text, str(path))
        elif args.genai_perf:
            points, notes = read_genai_perf(Path(args.genai_perf))
        else:
            points, notes = read_sweep(Path(args.sweep), args.configuration, args.isl, args.osl)
        initial = {n: float(v) for n, v in _fixed(args.start).items()}  # type: ignore[arg-type]
        base_values = load_profile(args.base, "--base") if args.base else {}
        kw = options.from_mapping(MockSettings, base_values, "--base")
        kw.update(fixed)
        base = replace(MockSettings(), **kw)  # type: ignore[arg-type]
        policies = (
            ["mixed", "prefill_first"] if args.prefill_policy == "both" else [args.prefill_policy]
        )
        if "prefill_policy" in fixed:
            policies = [str(fixed["prefill_policy"])]
        best: tuple[FitResult, MockSettings] | None = None
        for policy in policies:
            start = replace(base, mode="engine", prefill_policy=policy)
            print(f"fitting {', '.join(free)} ({policy}) to {len(points)} points ...", flush=True)
            started = time.process_time()
            result = fit(
                points,
                start,
                free,
                max_evals=args.max_evals,
                restarts=args.rounds - 1,
                start=initial,
                objective=args.objective,
                progress=functools.partial(_print_progress, time.monotonic()),
            )
            cpu_s = time.process_time() - started
            print(
                f"  {policy}: loss {result.loss:.4f} after {result.evaluations} evaluations "
                f"({result.replays} replays of the table, {cpu_s:.0f} s of CPU)"
            )
            if best is None or result.loss < best[0].loss:
                best = (result, start)
    except FitError as exc:
        print(f"surgebench fit: {exc}", file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(f"surgebench fit: {exc}", file=sys.stderr)
        return 2
    assert best is not None
    result, start = best
    settings = with_coefficients(start, result.coefficients)
    command = "surgebench fit " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    header = [*notes, f"Written by: {command}"]
    for line in error_table(result):
        print(line)
    out = Path(args.out)
    try:
        out.write_text(profile_toml(settings, result, fixed, header), "utf-8")
    except OSError as exc:
        print(f"surgebench fit: --out: cannot write {out}: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {out} (prefill_policy {settings.prefill_policy}; load it with "
        f"`surgebench mock --profile {out}`)"
    )
    return 0
