"""Render the report of a real short run in headless Chromium and save a full-page PNG.

    .venv/bin/python scripts/screenshot_report.py                 # a 60 s default spike run
    .venv/bin/python scripts/screenshot_report.py --run-dir results/20261201T...-screenshot
    .venv/bin/python scripts/screenshot_report.py --duration 30s --png /tmp/report.png

Needs Debian's ``chromium`` (``apt-get install -y chromium``). The page height is measured by a
first render (Chromium's ``--dump-dom`` of a page that writes its own scroll height), so the
screenshot holds the whole report. Prints the PNG's path and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDTH_PX = 1400
MAX_HEIGHT_PX = 30_000
CHROMIUM_TIMEOUT_S = 120


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("screenshot_report: no chromium found; apt-get install -y chromium")


def _chromium(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=False
    )


def page_height(binary: str, html: Path) -> int:
    """The report's full height at `WIDTH_PX`, measured by Chromium itself."""
    probe = html.read_text("utf-8").replace(
        "</body>",
        "<script>document.title='H'+document.documentElement.scrollHeight;"
        "document.body.setAttribute('data-h',document.documentElement.scrollHeight)</script>"
        "</body>",
    )
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "probe.html"
        page.write_text(probe, "utf-8")
        done = _chromium(
            binary,
            f"--window-size={WIDTH_PX},1000",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        )
    match = re.search(r'data-h="(\d+)"', done.stdout)
    return min(MAX_HEIGHT_PX, int(match.group(1)) + 40) if match else 8000


def screenshot(html: Path, png: Path) -> Path:
    binary = chromium_binary()
    height = page_height(binary, html)
    png.parent.mkdir(parents=True, exist_ok=True)
    done = _chromium(
        binary,
        f"--window-size={WIDTH_PX},{height}",
        f"--screenshot={png}",
        "--virtual-time-budget=5000",
        html.as_uri(),
    )
    if not png.exists():
        raise SystemExit(f"screenshot_report: chromium wrote no PNG:\n{done.stderr[-2000:]}")
    return png


def real_run(duration: str, out: Path) -> Path:
    """A default ``surgebench run`` (the spike against a small service), its folder."""
    argv = [str(ROOT / ".venv/bin/surgebench"), "run", "--duration", duration, "--name"]
    argv += ["screenshot", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    sys.stdout.write(done.stdout)
    match = re.search(r"^results: (.+)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not match:
        raise SystemExit(f"screenshot_report: the run failed ({done.returncode}):\n{done.stderr}")
    return Path(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, help="an existing run folder (else run one)")
    parser.add_argument("--duration", default="60s", help="length of the run made (default 60s)")
    parser.add_argument("--out", type=Path, default=ROOT / "results", help="parent of the run")
    parser.add_argument("--png", type=Path, help="where to write (default RUN_DIR/report.png)")
    args = parser.parse_args()
    if args.run_dir is not None and not (args.run_dir / "summary.json").is_file():
        parser.error(f"--run-dir: {str(args.run_dir)!r} has no summary.json; allowed: a run folder")
    run_dir = (args.run_dir or real_run(args.duration, args.out)).resolve()
    report = subprocess.run([str(ROOT / ".venv/bin/surgebench"), "report", str(run_dir)], cwd=ROOT)
    if report.returncode != 0:
        return report.returncode
    started = time.monotonic()
    png = screenshot(run_dir / "report.html", (args.png or run_dir / "report.png").resolve())
    print(f"screenshot: {png}")
    print(json.dumps({"png": str(png), "render_s": round(time.monotonic() - started, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
