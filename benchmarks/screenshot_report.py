"""Render report.html in headless Chromium and save a screenshot, to check it by eye.

    python benchmarks/screenshot_report.py                      # data/<name>/report/report.html
    python benchmarks/screenshot_report.py --fake               # a synthetic run in a temp dir
    python benchmarks/screenshot_report.py --html path/to/report.html --out shot.png

Needs Chromium (`apt-get install -y chromium`). Prints the screenshot path and its size.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmrec import paths  # noqa: E402
from mmrec.config import load_params  # noqa: E402


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    sys.exit("no Chromium found: apt-get update && apt-get install -y chromium")


def screenshot(html_path: Path, out: Path, size: str = "1400,2400") -> Path:
    """Load `html_path` in a fresh headless Chromium profile and write a PNG screenshot."""
    with tempfile.TemporaryDirectory(prefix="mmrec-chromium-") as profile:
        cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", f"--screenshot={out.resolve()}", f"--window-size={size}",
               "--hide-scrollbars", html_path.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if not out.exists():
        sys.exit(f"Chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--html", type=Path, help="report.html to render (default: the params' report)")
    ap.add_argument("--fake", action="store_true", help="render a report of a synthetic run first")
    ap.add_argument("--out", type=Path, default=Path("report_screenshot.png"))
    ap.add_argument("--window-size", default="1400,2400")
    args = ap.parse_args()
    params = load_params(args.params)
    with tempfile.TemporaryDirectory(prefix="mmrec-fake-run-") as tmp:
        html_path = args.html
        if args.fake:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from fake_run import write_fake_run
            from mmrec.report.stage import run

            # One model left untrained, so the report's "missing" line shows too.
            write_fake_run(params, Path(tmp), params.train.models[:-1])
            run(params, Path(tmp))
            html_path = paths.report_dir(params, Path(tmp)) / "report.html"
        elif html_path is None:
            html_path = paths.report_dir(params) / "report.html"
        if not html_path.exists():
            sys.exit(f"{html_path}: not found (run the report stage, or pass --fake)")
        out = screenshot(html_path, args.out, args.window_size)
    print(f"screenshot of {'a fake run' if args.fake else html_path} -> {out} ({out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
