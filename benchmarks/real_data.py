"""The README's real-data figures, reproduced: derive a params file from `params.yaml` (its
real-data defaults) for a real dataset, run every stage one after another (one heavy job at a
time: timings are per step), and print the README's table rows from the report.

    python benchmarks/real_data.py scientific --raw-dir path/to/amazon-scientific
    python benchmarks/real_data.py hm --raw-dir path/to/hm-sample
    python benchmarks/real_data.py scientific --raw-dir ... --table-only   # rows from a finished run
    python benchmarks/real_data.py scientific --raw-dir ... --models odmt --seeds 1 2 --set train.common.amp=cuda+cpu
    python benchmarks/real_data.py scientific --raw-dir ... --jobs 2   # two models at once, a core each

Datasets:
  scientific  Amazon 2018 Industrial & Scientific as processed by UniSRec (the two files
              Industrial_and_Scientific_5.json.gz and meta_Industrial_and_Scientific.json.gz),
              text only: `data.require: [text]`.
  hm          H&M (Kaggle layout: articles.csv, transactions_train.csv, images/), text + image.

Besides `train.models`, the run trains the ablations the README reports: KDSR without its
correlation supervision (`kdsr_plain`: skd and ckd off) and ODMT without the IMT
(`odmt_no_imt`) or without online distillation (`odmt_no_kd`). Outputs go to data/<name>/ as
with `dvc repro`; the derived params file is data/<name>.params.yaml.

`--jobs N` trains N models at once once the shared stages are done, each (train, evaluate)
chain in its own process with CPUs/N threads (`MMREC_THREADS` and `train.common.threads`), the
models with token transformers first since they take longest. A training process does not keep
two cores busy on these small matrices, so two one-thread processes finish sooner than two
two-thread runs in turn. The weights depend on the thread count (mmrec.train.repro): a run with
`--jobs 2` repeats itself, not a `--jobs 1` run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATASETS: dict[str, dict[str, Any]] = {
    "scientific": {"source": "amazon2018", "require": ["text"]},
    "hm": {"source": "hm", "require": ["text", "image"]},
}
ABLATIONS = {
    "kdsr_plain": {"arch": "kdsr", "skd": False, "ckd": False},
    "odmt_no_imt": {"arch": "odmt", "imt": False},
    "odmt_no_kd": {"arch": "odmt", "distill": False},
}


def derive_params(name: str, raw_dir: Path, models: list[str] | None, seeds: list[int] | None = None,
                  overrides: list[str] | None = None) -> dict[str, Any]:
    """params.yaml with data.name/source/raw_dir/require set for `name` and the ablations added;
    every other key keeps its real-data default (no profile applies: data.name is not sample).

    seeds:     for each, a replicate `<model>_s<seed>` of every model (same settings, that
               training seed); the report pools them (its Seeds table).
    overrides: `dotted.key=value` (value read as YAML), as `dvc exp run -S` does; applied before
               the replicates are made, so an entry defined here gets its seeds too.
    """
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(name=name, raw_dir=str(raw_dir), **DATASETS[name])
    train = params["train"]
    base = models or [*train["models"], *ABLATIONS]
    # only the ablations that run: a section no entry uses is a params error
    train.update({k: v for k, v in ABLATIONS.items() if k in base})
    train["models"] = base
    _override(params, overrides or [])
    # an entry of its own (`--set 'train.odmt_cold={arch: odmt, ...}'`) is replicated with its settings
    replicas = {f"{m}_s{s}": {**(train[m] if "arch" in (train.get(m) or {}) else {"arch": m}), "seed": s}
                for s in seeds or [] for m in base}
    train.update(replicas)
    train["models"] = [*train["models"], *replicas]
    return params


def _override(params: dict[str, Any], overrides: list[str]) -> None:
    """Apply `dotted.key=value` items (value read as YAML) to params in place."""
    for item in overrides:
        key, _, value = item.partition("=")
        if not key or not _:
            raise SystemExit(f"--set {item!r}: expected dotted.key=value")
        *parents, leaf = key.split(".")
        node = params
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = yaml.safe_load(value)


#: architectures whose training dominates a run (token transformers): `--jobs` starts them first
LONG_ARCHS = ("odmt", "odmt_kdsr")


def job_order(train: dict[str, Any]) -> list[str]:
    """train.models with the long trainings first (stable otherwise): scheduling the longest
    jobs first keeps a pool of workers from ending on one long job alone."""
    models = train["models"]

    def arch(m: str) -> str:
        return (train.get(m) or {}).get("arch", m)

    return sorted(models, key=lambda m: arch(m) not in LONG_ARCHS)


def run_step(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run one stage as a child process (output appended to `log`); its wall time, CPU time and
    peak RSS from the child's own rusage (os.wait4), so steps do not blur into each other."""
    t0 = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(cmd)} failed; see {log}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def table_rows(name: str) -> list[str]:
    """README rows: test Recall/NDCG@10 with 95% intervals, paired differences with the
    baseline, cold / rarest / most popular target groups, best validation epoch."""
    import polars as pl

    data = ROOT / "data" / name
    comp = json.loads((data / "report" / "comparison.json").read_text())
    base = comp.get("baseline", "sasrec")
    lines = [comp["protocol"], "",
             f"| model | Recall@10 [95% CI] | NDCG@10 [95% CI] | ΔR@10 vs {base} | ΔN@10 vs {base} "
             "| R@10 cold / Q1 (rare) / Q4 (popular) | best valid R@10 (epoch of epochs) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in comp["models"]:
        m = r["model"]
        metrics = json.loads((data / "results" / m / "metrics.json").read_text())
        test = next(d for d in metrics["details"] if d["split"] == "test")
        groups = {g["label"]: g for g in test["by_popularity"]}
        labels = list(groups)

        def grp(label: str) -> str:
            g = groups.get(label)
            return f"{g['recall@10']:.3f} (n={g['n_users']})" if g else "–"

        def ci(k: str) -> str:
            return f"{r[k]['mean']:.4f} [{r[k]['lo']:.4f}, {r[k]['hi']:.4f}]"

        def diff(k: str) -> str:
            return "baseline" if m == base else diff_of(r, k, base)

        log = pl.read_csv(data / "models" / m / "train_log.tsv", separator="\t", infer_schema=False)
        log = log.with_columns(pl.all().cast(pl.Float64, strict=False))
        i = log["valid_recall@10"].arg_max()
        best = f"{log['valid_recall@10'][i]:.4f} ({int(log['epoch'][i])} of {log.height})"
        lines.append(f"| {m} | {ci('recall@10')} | {ci('ndcg@10')} | {diff('recall@10')} | {diff('ndcg@10')} "
                     f"| {grp('cold')} / {grp(labels[1])} / {grp(labels[-1])} | {best} |")
    lines += ["", "† significant after Holm's adjustment over the table's paired comparisons."]
    groups = comp.get("seed_groups") or []
    if groups:
        lines += ["", f"| model (seeds) | Recall@10 mean ± sd (per seed) | NDCG@10 mean ± sd (per seed) "
                      f"| pooled ΔR@10 vs {base} | pooled ΔN@10 vs {base} |", "|---|---:|---:|---:|---:|"]
        for g in groups:
            def spread(k: str) -> str:
                return (f"{g[k]['mean']:.4f} ± {g[k]['sd']:.4f} ("
                        + ", ".join(f"{v:.4f}" for v in g[k]["values"]) + ")")

            lines.append(f"| {g['model']} ({', '.join(map(str, g['seeds']))}) | {spread('recall@10')} "
                         f"| {spread('ndcg@10')} | {diff_of(g, 'recall@10', base)} | {diff_of(g, 'ndcg@10', base)} |")
    return lines


def diff_of(row: dict[str, Any], k: str, base: str) -> str:
    """`<k>_vs_<base>` of a comparison row as `diff [lo, hi] verdict †`, or a dash."""
    x = row.get(f"{k}_vs_{base}")
    if x is None:
        return "–"
    return f"{x['diff']:+.4f} [{x['lo']:+.4f}, {x['hi']:+.4f}] {x['verdict']}" + (" †" if x["holm_significant"] else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=sorted(DATASETS))
    ap.add_argument("--raw-dir", type=Path, required=True, help="folder with the raw files")
    ap.add_argument("--models", nargs="+", help="train.models entries (default: all + ablations)")
    ap.add_argument("--seeds", nargs="+", type=int, help="also train a replicate <model>_s<seed> of every model")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a params key (dotted, value as YAML), e.g. train.common.amp=cuda+cpu")
    ap.add_argument("--jobs", type=int, default=1,
                    help="models trained at once, each with CPUs/jobs threads (default 1: one after another)")
    ap.add_argument("--table-only", action="store_true", help="print the rows of a finished run")
    args = ap.parse_args()
    if args.table_only:
        print("\n".join(table_rows(args.dataset)))
        return
    if args.jobs < 1:
        raise SystemExit("--jobs: expected 1 or more")
    from mmrec.threads import available_cpus

    threads = max(1, available_cpus() // args.jobs)
    # training's thread count fixes its weights: a parallel run sets it to its share of the CPUs
    pinned = [] if args.jobs == 1 else [f"train.common.threads={threads}"]
    params = derive_params(args.dataset, args.raw_dir.resolve(), args.models, args.seeds, [*pinned, *args.set])
    pfile = ROOT / "data" / f"{args.dataset}.params.yaml"
    pfile.parent.mkdir(parents=True, exist_ok=True)
    pfile.write_text(yaml.safe_dump(params, sort_keys=False))
    log = ROOT / "data" / f"{args.dataset}.run.log"
    mmrec = [sys.executable, "-m", "mmrec.cli", "run"]
    cpu = {"s": 0.0}
    lock = threading.Lock()
    t0 = time.perf_counter()
    print(f"{'step':<26}{'wall s':>10}{'cpu s':>10}{'peak RSS MB':>13}", flush=True)

    def step(args_: list[str], log_: Path, env: dict[str, str] | None = None) -> None:
        res = run_step([*mmrec, *args_, "--params", str(pfile)], log_, env)
        with lock:
            cpu["s"] += res["cpu_s"]
            print(f"{' '.join(args_):<26}{res['wall_s']:>10.1f}{res['cpu_s']:>10.1f}{res['peak_rss_mb']:>13.0f}",
                  flush=True)

    for shared in (["ingest"], ["extract"], ["teacher"]):
        step(shared, log)
    if args.jobs == 1:
        for m in params["train"]["models"]:
            step(["train", m], log)
            step(["evaluate", m], log)
    else:
        def chain(m: str) -> None:
            own = log.with_name(f"{args.dataset}.run.{m}.log")
            for s in (["train", m], ["evaluate", m]):
                step(s, own, {"MMREC_THREADS": str(threads)})

        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(chain, job_order(params["train"])))        # list(): re-raises a failed step
    step(["report"], log)
    # with --jobs the steps overlap: the total is the elapsed time, not their sum
    print(f"{'total':<26}{time.perf_counter() - t0:>10.1f}{cpu['s']:>10.1f}\n")
    print("\n".join(table_rows(args.dataset)))


if __name__ == "__main__":
    main()
