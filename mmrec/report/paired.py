"""Pair any two results folders (`mmrec paired A B`): the paired differences of Recall, NDCG and
MRR@K over the users both were evaluated on, with intervals, verdicts and Holm's adjustment, so
every paired figure quoted anywhere has one command behind it.

A results folder is what `evaluate@<model>` writes (data/<name>/results/<model>/), holding
ranks.parquet (user_idx, split, target, rank). The two must hold the same users with the same
targets: a comparison of different evaluations is refused, not silently narrowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from mmrec.metrics.formulas import METRICS
from mmrec.metrics.intervals import paired_table
from mmrec.metrics.params import EQUIVALENCE_MARGIN, N_BOOT
from mmrec.paths import RANKS_FILE


def read_ranks(folder: str | Path, split: str) -> pl.DataFrame:
    """(user_idx, target, rank) of `split` from a results folder (or a ranks.parquet path)."""
    path = Path(folder)
    path = path if path.suffix == ".parquet" else path / RANKS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (a results folder holds {RANKS_FILE}: "
                                "run `mmrec run evaluate <model>` first)")
    df = pl.read_parquet(path)
    missing = {"user_idx", "split", "target", "rank"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    df = df.filter(pl.col("split") == split).select("user_idx", "target", "rank")
    if df.is_empty():
        raise ValueError(f"{path}: no {split!r} rows (splits present: "
                         f"{', '.join(sorted(pl.read_parquet(path, columns=['split'])['split'].unique()))})")
    return df


def pair_ranks(a: pl.DataFrame, b: pl.DataFrame, names: tuple[str, str] = ("A", "B")) -> pl.DataFrame:
    """(user_idx, rank_a, rank_b) for the same users with the same targets; an error naming how
    the two evaluations differ otherwise."""
    only_a = a.join(b, on="user_idx", how="anti")
    only_b = b.join(a, on="user_idx", how="anti")
    if only_a.height or only_b.height:
        example = (only_a if only_a.height else only_b)["user_idx"].head(3).to_list()
        raise ValueError(f"{names[0]} has {a.height} users and {names[1]} {b.height}: "
                         f"{only_a.height} only in {names[0]}, {only_b.height} only in {names[1]} "
                         f"(user_idx e.g. {example}); pair runs evaluated on the same users "
                         "(same dataset, same split, same ingest)")
    both = a.join(b, on="user_idx", suffix="_b")
    differ = both.filter(pl.col("target") != pl.col("target_b"))
    if differ.height:
        raise ValueError(f"{differ.height} of {both.height} users have different targets in "
                         f"{names[0]} and {names[1]} (user_idx e.g. {differ['user_idx'].head(3).to_list()}): "
                         "the two evaluations are not of the same split")
    return both.select("user_idx", pl.col("rank").alias("rank_a"), pl.col("rank_b")).sort("user_idx")


def paired_folders(a: str | Path, b: str | Path, k: int = 10, split: str = "test",
                   n_boot: int = N_BOOT, margin: float = EQUIVALENCE_MARGIN) -> dict[str, Any]:
    """The paired comparison A - B of Recall/NDCG/MRR@k: {a, b, split, users, bootstrap, margin,
    rows: [paired_difference + p_holm, holm_significant]} (one Holm family: the three metrics)."""
    both = pair_ranks(read_ranks(a, split), read_ranks(b, split), (str(a), str(b)))
    rows = paired_table(both["rank_a"].to_numpy(), both["rank_b"].to_numpy(),
                        [f"{m}@{k}" for m in METRICS], n_boot, margin)
    return {"a": str(a), "b": str(b), "split": split, "users": both.height, "bootstrap": n_boot,
            "margin": margin, "rows": rows}


def format_paired(result: dict[str, Any]) -> str:
    """A plain-text table of `paired_folders`' result, with the footnotes that read it."""
    lines = [f"A = {result['a']}", f"B = {result['b']}",
             f"{result['split']} split, {result['users']} users paired; 95% paired bootstrap "
             f"({result['bootstrap']} resamples); equivalence margin ±{result['margin']:g}",
             "",
             f"{'metric':<10} {'A':>8} {'B':>8} {'A - B':>9}  {'95% CI':<21} {'p':>7} {'p_holm':>7}  verdict"]
    for r in result["rows"]:
        lines.append(f"{r['metric']:<10} {r['a']:8.4f} {r['b']:8.4f} {r['diff']:+9.4f}  "
                     f"[{r['lo']:+.4f}, {r['hi']:+.4f}] {r['p']:7.4f} {r['p_holm']:7.4f}  {r['verdict']}"
                     + (" †" if r["holm_significant"] else ""))
    lines += ["", "better/worse: the interval excludes 0; equivalent: it lies inside ±margin; "
              "inconclusive: neither (not evidence of no difference). † significant after Holm's "
              f"adjustment over these {len(result['rows'])} comparisons."]
    return "\n".join(lines)
