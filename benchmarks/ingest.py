"""Ingest throughput and peak memory on a synthetic Amazon-2018-format dataset.

Generates `--lines` review lines (JSON lines, gzip level 1 unless --plain) plus a meta file
into a temporary folder, runs the ingest stage in a child process, and prints rows/s and the
child's peak RSS next to the raw file sizes.

    .venv/bin/python benchmarks/ingest.py --lines 5000000
    .venv/bin/python benchmarks/ingest.py --lines 5000000 --raw /tmp/bench5m --hash

`--raw DIR` keeps the generated files in DIR and reuses them on the next run with the same
`--lines` (generation takes longer than the ingest); `--hash` prints the SHA-256 of every
ingest output, to compare two versions of the stage on the same data byte for byte.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

TEXTS = ["Great product, works as described and arrived on time. Would buy again.",
         "Not what I expected. The colour is off and the size runs small; returning it.",
         "Solid quality for the price. My kids love it and use it every day!",
         "Broke after two weeks. Customer service was helpful though."]


def generate(out: Path, n_lines: int, plain: bool, seed: int = 0) -> tuple[Path, Path]:
    """Reviews over ~n/10 users and ~n/50 items (Zipf-ish), 3% of lines on asins without meta."""
    rng = np.random.default_rng(seed)
    n_users, n_items = max(10, n_lines // 10), max(10, n_lines // 50)
    ext = ".json" if plain else ".json.gz"
    reviews = out / f"Bench{ext}"
    opener = (lambda p: open(p, "wb")) if plain else (lambda p: gzip.open(p, "wb", compresslevel=1))
    chunk = 1_000_000
    with opener(reviews) as fh:
        for start in range(0, n_lines, chunk):
            n = min(chunk, n_lines - start)
            users = rng.integers(0, n_users, n)
            items = np.minimum((rng.pareto(1.2, n) * n_items / 20).astype(np.int64), n_items * 103 // 100)
            t = 1_300_000_000 + rng.integers(0, 300_000_000, n) // 86400 * 86400
            df = pl.DataFrame({
                "overall": rng.integers(1, 6, n).astype(np.float64), "verified": rng.random(n) < 0.9,
                "reviewTime": ["01 1, 2015"] * n,
                "reviewerID": pl.Series(users).cast(pl.String).str.zfill(12).str.pad_start(13, "A"),
                "asin": pl.Series(items).cast(pl.String).str.zfill(9).str.pad_start(10, "B"),
                "reviewerName": ["Jane D."] * n,
                "reviewText": np.array(TEXTS)[rng.integers(0, len(TEXTS), n)],
                "summary": ["Five Stars"] * n, "unixReviewTime": t})
            fh.write(df.write_ndjson().encode())
    meta = out / "meta_Bench.json.gz"
    with gzip.open(meta, "wb", compresslevel=1) as fh:
        for i in range(n_items):  # items >= n_items have reviews but no meta row
            fh.write((json.dumps({
                "asin": f"B{i:09d}", "title": f"Widget &amp; gadget model {i}",
                "brand": f"Brand{i % 97}", "category": ["Tools", f"Sub{i % 13}"],
                "description": [f"A <b>useful</b> widget number {i}."], "imageURL": [],
                "imageURLHighRes": []}) + "\n").encode())
    return reviews, meta


# VmHWM belongs to the process image, so unlike ru_maxrss it does not inherit the RSS of the
# (large, data-generating) parent that forked the child.
PEAK = """
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

# As at every stage entry (stage_main, `mmrec run`): the environment is configured before
# polars is imported (thread pools; its allocator's page return, mmrec.threads).
ENTRY = """
from mmrec.threads import configure_environment
configure_environment()
"""

CHILD = PEAK + ENTRY + """
import json, sys, time
from mmrec.config import parse_params
from mmrec.data.stage import run, summary_line
t = time.time()
r = run(parse_params({"data": {"name": "bench", "raw_dir": sys.argv[1], "require": ["text"],
                               "images": {"enabled": False}}}), root=sys.argv[2])
print(summary_line(r))
print(json.dumps({"seconds": time.time() - t, "rows_read": r["rows_read"],
                  "interactions": r["stats"]["interactions"], "peak_mb": peak_mb()}))
"""


# What the child holds before reading a byte: imports and params validation (parse_params
# checks the train section against the model registry, which imports torch).
BASELINE = PEAK + ENTRY + """
import sys
from mmrec.config import parse_params
import mmrec.data.stage  # noqa: F401
parse_params({"data": {"name": "bench", "raw_dir": sys.argv[1]}})
print(peak_mb())
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=5_000_000)
    ap.add_argument("--plain", action="store_true", help="uncompressed .json reviews")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--raw", type=Path, help="folder for the generated files, reused when it "
                    "already holds the same --lines/--plain dataset")
    ap.add_argument("--hash", action="store_true", help="print the SHA-256 of every output file")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mmrec-bench-ingest-"))
    try:
        raw = a.raw or tmp / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        stamp = raw / "generated.json"  # what the folder holds, so a reuse cannot mix sizes
        want = {"lines": a.lines, "plain": a.plain}
        reviews = raw / ("Bench.json" if a.plain else "Bench.json.gz")
        if a.raw and stamp.is_file() and json.loads(stamp.read_text()) == want and reviews.is_file():
            print(f"reusing {raw}")
        else:
            for old in raw.iterdir():
                old.unlink()
            reviews, _ = generate(raw, a.lines, a.plain)
            stamp.write_text(json.dumps(want))
        gen_s = time.time() - t0
        with (gzip.open(reviews, "rb") if reviews.suffix == ".gz" else open(reviews, "rb")) as fh:
            raw_bytes = sum(len(b) for b in iter(lambda: fh.read(1 << 24), b""))
        root = Path(__file__).resolve().parents[1]
        proc = subprocess.run([sys.executable, "-c", CHILD, str(raw), str(tmp)], cwd=root,
                              capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(root)})
        if proc.returncode:
            sys.exit(proc.stderr)
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = ru.ru_utime + ru.ru_stime
        summary, stats = proc.stdout.strip().splitlines()[-2:]
        s = json.loads(stats)
        peak_mb = s["peak_mb"]
        print(summary)
        print(f"review lines: {a.lines:,}  file: {reviews.stat().st_size / 1e6:,.0f} MB on disk, "
              f"{raw_bytes / 1e6:,.0f} MB uncompressed  (generated in {gen_s:.0f}s)")
        print(f"ingest wall time: {s['seconds']:.1f}s (stage only, without interpreter start); "
              f"CPU time of the whole child process (imports included): {cpu_s:.1f}s")
        print(f"throughput: {s['rows_read'] / s['seconds']:,.0f} raw rows/s; "
              f"{a.lines / s['seconds']:,.0f} interactions read/s")
        base = subprocess.run([sys.executable, "-c", BASELINE, str(raw)], cwd=root,
                              capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(root)})
        base_mb = float(base.stdout.strip() or 0)
        print(f"peak RSS of the ingest process: {peak_mb:,.0f} MiB "
              f"({peak_mb * 2**20 / raw_bytes * 100:.0f}% of the uncompressed review file); "
              f"of which {base_mb:,.0f} MiB is the interpreter, imports and params validation "
              f"alone; {(peak_mb - base_mb) * 2**20 / raw_bytes * 100:.0f}% above that")
        if a.hash:
            out = tmp / "data" / "bench" / "ingest"
            for f in sorted(out.iterdir()):
                print(f"sha256 {hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}")
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
