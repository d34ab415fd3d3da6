"""recommend@<model> export throughput, and `mmrec recommend` answering one user from the export.

    python benchmarks/recommend.py                     # 43,583 users x 58,900 items, d = 64 (Arts-sized)
    python benchmarks/recommend.py --users 5000 --lookups 5

Builds a synthetic project in a temporary folder: ingest-like items.parquet (with ~300-character
texts) and interactions.parquet (5-15 interactions per user, written like ingest writes them), a
randomly initialised SASRec (hidden 64, 2 layers, max_len 50: the real model's user encoder, so
the export pays its forward pass) saved as model.pt. Then:

1. exports every user's top-k as the stage does (same function, same files, same fingerprints)
   and prints users/s, the process's peak RSS and what the user encoder alone takes of it;
2. runs `mmrec recommend --user <id> --json` (the installed console script; `python -m
   mmrec.cli` without one) as fresh processes for random users: wall time per process and peak
   RSS over them, and two floors: `python -c pass`, and a process importing what the fast path
   imports, doing nothing;
3. times the same lookup in-process: the fast path (`mmrec.cli.quick_recommend`: plain YAML,
   the SQLite index), the validating path (`mmrec.cli.recommend`: pydantic params, same index)
   and the index read alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmrec import paths  # noqa: E402
from mmrec.config import parse_params  # noqa: E402
from mmrec.io import atomic_dir, write_parquet  # noqa: E402
from mmrec.models.base import ModelContext  # noqa: E402
from mmrec.models.registry import build_model  # noqa: E402
from mmrec.serving.export import export_recommendations, load_items, load_user_sequences  # noqa: E402
from mmrec.serving.index import INDEX_FILE, answer_from_index, export_inputs, fingerprint  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def make_project(root: Path, n_users: int, n_items: int, seed: int = 0) -> None:
    """params.yaml and ingest files of a synthetic dataset `bench` under `root`."""
    rng = np.random.default_rng(seed)
    (root / "params.yaml").write_text(yaml.safe_dump({"data": {"name": "bench"}, "device": "cpu",
                                                      "train": {"models": ["sasrec"]}}))
    ingest = root / "data" / "bench" / "ingest"
    words = np.array("glass linen metal ceramic teal white red vase mug lamp bowl candle clock "
                     "cushion notebook classic premium budget luxury soft-touch glazed".split())
    texts = [" ".join(words[rng.integers(0, len(words), 45)]) for _ in range(n_items)]
    write_parquet(pl.DataFrame({
        "item_idx": pl.Series(np.arange(1, n_items + 1), dtype=pl.Int32),
        "item_id": [f"B{i:09d}" for i in range(1, n_items + 1)],
        "text": texts,
        "image_path": [f"data/raw/bench/images/B{i:09d}.jpg" for i in range(1, n_items + 1)],
        "n_train": pl.Series(rng.integers(0, 50, n_items), dtype=pl.Int32),
        "has_text": [True] * n_items, "has_image": [True] * n_items,
    }), ingest / "items.parquet")
    lengths = rng.integers(5, 16, n_users)
    user_ids = np.array(sorted(f"A{u:013d}" for u in rng.choice(10**13, n_users, replace=False)))
    uidx = np.repeat(np.arange(n_users, dtype=np.int32), lengths)
    write_parquet(pl.DataFrame({
        "user_idx": uidx, "user_id": user_ids[uidx],
        "item_idx": rng.integers(1, n_items + 1, len(uidx)).astype(np.int32),
        "timestamp": np.arange(len(uidx), dtype=np.int64) + 1_500_000_000,
    }), ingest / "interactions.parquet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=43_583)
    ap.add_argument("--items", type=int, default=58_900)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--batch-users", type=int, default=512)
    ap.add_argument("--lookups", type=int, default=10, help="fresh `mmrec recommend` processes")
    ap.add_argument("--in-process", type=int, default=200, help="lookups timed inside this process")
    ap.add_argument("--keep", type=Path, help="build the project in this new folder and keep it (to time "
                                              "`mmrec recommend` by hand afterwards)")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.keep is not None:
        args.keep.mkdir(parents=True)
    with contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory(
            prefix="mmrec-bench-recommend-") as tmp:
        root = Path(tmp)
        make_project(root, args.users, args.items)
        params = parse_params({**yaml.safe_load((root / "params.yaml").read_text()),
                               "recommend": {"k": args.k, "batch_users": args.batch_users}})
        ctx = ModelContext(n_items=args.items, max_len=args.max_len,
                           item_pop=torch.zeros(args.items + 1, dtype=torch.long))
        model = build_model("sasrec", ctx, {"hidden": args.dim, "layers": 2, "heads": 2,
                                            "max_len": args.max_len}).eval()
        mdir = paths.model_dir(params, "sasrec", root)
        mdir.mkdir(parents=True)
        torch.save({"state_dict": model.state_dict()}, mdir / "model.pt")  # fingerprinted, never loaded
        print(f"{args.users:,} users x {args.items:,} items, d={args.dim}, max_len={args.max_len}, "
              f"k={args.k}, batch_users={args.batch_users}, torch threads={torch.get_num_threads()}")

        # 1. the export, as `recommend@sasrec` runs it (mmrec.serving.export.run minus load_model)
        t0 = time.perf_counter()
        inputs = export_inputs(params, "sasrec", root)
        recorded = {name: fingerprint(p, root) for name, p in inputs.items()}
        seqs = load_user_sequences(inputs["interactions.parquet"])
        items_table = load_items(inputs["items.parquet"])
        out = paths.recommend_dir(params, "sasrec", root)
        with atomic_dir(out) as tmp_out:
            s = export_recommendations(model, seqs, items_table, tmp_out, params.recommend, args.max_len,
                                       metadata={"model": "sasrec", "inputs": recorded})
        total = time.perf_counter() - t0
        sizes = {p.name: p.stat().st_size / 2**20 for p in out.iterdir()}
        print(f"export: {s['rows']:,} rows in {total:.1f} s ({args.users / total:,.0f} users/s end to end; "
              f"scoring and writing {s['seconds']:.1f} s, {s['users_per_s']:,.0f} users/s), "
              f"peak RSS {peak_rss_mib():,.0f} MiB; files (MiB): "
              + ", ".join(f"{n} {v:.1f}" for n, v in sorted(sizes.items())))

        # What the user encoder alone costs (SASRec forward on the same batches): the rest of the
        # export is scoring against all items, the top-k and writing.
        from mmrec.serving.export import batch_inputs

        t = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, args.users, args.batch_users):
                model.user_repr(batch_inputs(seqs, np.arange(start, min(start + args.batch_users, args.users)),
                                             args.max_len).inputs)
        print(f"of which the user encoder alone (SASRec forward, same batches): {time.perf_counter() - t:.1f} s")

        # 2. fresh processes
        rng = random.Random(0)
        users = [seqs.user_id[rng.randrange(args.users)].as_py() for _ in range(max(args.lookups, args.in_process))]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        script = Path(sys.executable).parent / "mmrec"
        entry = [str(script)] if script.exists() else [sys.executable, "-m", "mmrec.cli"]
        cmd = [*entry, "recommend", "--model", "sasrec", "-k", "10", "--json",
               "--params", str(root / "params.yaml"), "--root", str(root)]

        def fresh(argv: list[str]) -> tuple[float, float]:
            """(wall seconds, peak RSS MiB) of one process (RSS via GNU time's ru_maxrss)."""
            t = time.perf_counter()
            res = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t
            if res.returncode != 0:
                raise RuntimeError(res.stderr)
            return wall, int(res.stderr.strip().splitlines()[-1]) / 1024

        bare = [fresh([sys.executable, "-c", "pass"]) for _ in range(5)]
        floor = [fresh([sys.executable, "-c", "import mmrec.cli, mmrec.serving.index, mmrec.rawparams"])
                 for _ in range(5)]
        runs = []
        for uid in users[:args.lookups]:
            runs.append(fresh([*cmd, "--user", uid]))
        check = subprocess.run([*cmd, "--user", users[0]], env=env, capture_output=True, text=True)
        assert json.loads(check.stdout)["source"] == "export" and check.stderr == "", check.stderr
        walls = sorted(w for w, _ in runs)
        print(f"fresh `mmrec recommend --user`: median {statistics.median(walls) * 1000:.0f} ms, "
              f"max {walls[-1] * 1000:.0f} ms, peak RSS {max(r for _, r in runs):.0f} MiB over {len(runs)} "
              f"processes ({' '.join(entry[:1])}); floors: `python -c pass` "
              f"{statistics.median(w for w, _ in bare) * 1000:.0f} ms, {max(r for _, r in bare):.0f} MiB; "
              f"python + the fast path's imports, no work: "
              f"{statistics.median(w for w, _ in floor) * 1000:.0f} ms, {max(r for _, r in floor):.0f} MiB")

        # 3. in-process: what a long-lived server using these functions pays per user
        from mmrec import cli

        pfile = str(root / "params.yaml")
        timed: dict[str, list[float]] = {"quick": [], "validating": [], "index": []}
        calls = {"quick": lambda u: cli.quick_recommend("sasrec", u, 10, pfile, str(root)),
                 "validating": lambda u: cli.recommend("sasrec", u, 10, pfile, str(root)),
                 "index": lambda u: answer_from_index(out / INDEX_FILE, root, model="sasrec", user=u, k=10,
                                                      mask_history=True)}
        for name, call in calls.items():
            call(users[0])                                                              # warm-up
            for uid in users[:args.in_process]:
                t = time.perf_counter()
                rec = call(uid)
                timed[name].append(time.perf_counter() - t)
                assert rec["source"] == "export"
        for name, what in (("quick", "fast path `mmrec.cli.quick_recommend` (plain YAML, index)"),
                           ("validating", "validating `mmrec.cli.recommend` (pydantic params, index)"),
                           ("index", "`answer_from_index` alone")):
            t = sorted(timed[name])
            print(f"in-process {what}: median {statistics.median(t) * 1000:.2f} ms, "
                  f"p95 {t[int(0.95 * (len(t) - 1))] * 1000:.2f} ms over {len(t)} users")


if __name__ == "__main__":
    main()
