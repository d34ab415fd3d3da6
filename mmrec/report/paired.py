"""Pair any two results folders (`mmrec paired A B`): the paired differences of Recall, NDCG and
MRR@K over the users both were evaluated on, with intervals, verdicts and Holm's adjustment, so
every paired figure quoted anywhere has one command behind it.

A results folder is what `evaluate@<model>` writes (data/<name>/results/<model>/), holding
ranks.parquet (user_idx, split, target, rank). The two must hold the same users with the same
targets: a comparison of different evaluations is refused, not silently narrowed.

`--targets cold` (or `Q1`..`Q<n>`) pairs only the users whose target falls in that popularity
group of the evaluate stage's breakdown (cold = never in training), read from the dataset's
items.parquet: the paired interval of a model's gain on new or rare items.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from mmrec.metrics.formulas import METRICS
from mmrec.metrics.intervals import paired_table, seed_level_interval
from mmrec.metrics.params import EQUIVALENCE_MARGIN, N_BOOT, POPULARITY_GROUPS
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


def align_runs(runs: Sequence[pl.DataFrame], names: Sequence[str]) -> list[np.ndarray]:
    """[U] ranks of each (user_idx, target, rank) frame, aligned on the users of the first
    (sorted by user_idx); all must hold the same users with the same targets (`pair_ranks`'
    error, naming the two, otherwise)."""
    return [pair_ranks(runs[0], r, (names[0], n))["rank_b"].to_numpy() for n, r in zip(names, runs)]


def aligned_runs(folders: Sequence[str | Path], split: str) -> tuple[list[np.ndarray], np.ndarray]:
    """`align_runs` of the `split` ranks of results folders, and the [U] targets they share."""
    frames = [read_ranks(f, split) for f in folders]
    return align_runs(frames, [str(f) for f in folders]), frames[0].sort("user_idx")["target"].to_numpy()


def default_items_path(folder: str | Path) -> Path:
    """The items.parquet of the dataset a results folder belongs to: data/<name>/results/<model>
    (or its ranks.parquet) -> data/<name>/ingest/items.parquet."""
    path = Path(folder)
    path = path.parent if path.suffix == ".parquet" else path
    return path.parent.parent / "ingest" / "items.parquet"


def target_group_mask(targets: np.ndarray, items_path: str | Path, group: str,
                      n_groups: int = POPULARITY_GROUPS) -> np.ndarray:
    """[U] bool: the users whose target is in popularity `group` ("cold" or "Q1".."Q<n_groups>",
    any case), grouped as the evaluate stage does (mmrec.metrics.breakdown.popularity_groups)."""
    # torch only here: plain `mmrec paired` stays NumPy
    from mmrec.data.items import load_item_pop
    from mmrec.metrics.breakdown import popularity_group_labels, popularity_groups

    names = popularity_group_labels(n_groups)
    labels = [label.lower() for label in names]
    if group.lower() not in labels:
        raise ValueError(f"--targets {group!r}: expected one of all, {', '.join(names)} ({n_groups} popularity groups)")
    item_group = popularity_groups(load_item_pop(Path(items_path)), n_groups).numpy()   # [N+1]
    if targets.max(initial=0) >= len(item_group):
        raise ValueError(f"{items_path}: {len(item_group) - 1} items, but a target is item {int(targets.max())}: "
                         "these results are not of this dataset (pass --items)")
    return item_group[targets] == labels.index(group.lower())


def paired_folders(a: str | Path | Sequence[str | Path], b: str | Path | Sequence[str | Path], k: int = 10,
                   split: str = "test", n_boot: int = N_BOOT, margin: float = EQUIVALENCE_MARGIN,
                   targets: str = "all", items: str | Path | None = None,
                   n_groups: int = POPULARITY_GROUPS) -> dict[str, Any]:
    """The paired comparison A - B of Recall/NDCG/MRR@k: {a, b, split, users, bootstrap, margin,
    rows: [paired_difference + p_holm, holm_significant]} (one Holm family: the three metrics).

    targets: "all", or a popularity group ("cold", "Q1".."Q<n_groups>") of the dataset's
    `items` (default: the first folder's data/<name>/ingest/items.parquet): only the users whose
    target is in it are paired; `users` counts them.

    A and B may each be several results folders, one per training seed of that model: `rows`
    then pool the seeds (a user's value is the mean over its model's seeds), and when both have
    the same number of seeds `per_seed` holds seed i of A against seed i of B (each its own
    Holm family), so the seed-to-seed spread of the difference is visible beside the pooled one,
    and `across_seeds` the t interval over those seed-pair differences (`seed_level_interval`).
    """
    fa = [a] if isinstance(a, (str, Path)) else list(a)
    fb = [b] if isinstance(b, (str, Path)) else list(b)
    runs, target = aligned_runs([*fa, *fb], split)
    if targets.lower() != "all":
        items = default_items_path(fa[0]) if items is None else items
        keep = target_group_mask(target, items, targets, n_groups)
        if not keep.any():
            raise ValueError(f"no {split} user has a target in popularity group {targets!r} ({items})")
        runs = [r[keep] for r in runs]
    ra, rb = runs[:len(fa)], runs[len(fa):]
    metrics = [f"{m}@{k}" for m in METRICS]
    out = {"a": ", ".join(map(str, fa)), "b": ", ".join(map(str, fb)), "split": split, "users": len(runs[0]),
           "targets": targets if targets.lower() == "all" else f"{targets} ({items})",
           "bootstrap": n_boot, "margin": margin, "runs_a": len(fa), "runs_b": len(fb),
           "rows": paired_table(ra, rb, metrics, n_boot, margin)}
    if len(fa) == len(fb) > 1:
        out["per_seed"] = [paired_table(x, y, metrics, n_boot, margin) for x, y in zip(ra, rb)]
        out["across_seeds"] = [{"metric": m, **seed_level_interval([rows[i]["diff"] for rows in out["per_seed"]], margin)}
                               for i, m in enumerate(metrics)]
    return out


def format_paired(result: dict[str, Any]) -> str:
    """A plain-text table of `paired_folders`' result, with the footnotes that read it."""
    pooled = result.get("runs_a", 1) > 1 or result.get("runs_b", 1) > 1
    lines = [f"A = {result['a']}", f"B = {result['b']}",
             f"{result['split']} split, {result['users']} users paired"
             + ("" if result.get("targets", "all") == "all" else f" (targets in popularity group {result['targets']})")
             + "; 95% paired bootstrap "
             f"({result['bootstrap']} resamples); equivalence margin ±{result['margin']:g}"]
    if pooled:
        lines.append(f"pooled over seeds: A {result['runs_a']} run(s), B {result['runs_b']} run(s); a user's "
                     "value is the mean over its model's runs")
    lines += ["", f"{'metric':<10} {'A':>8} {'B':>8} {'A - B':>9}  {'95% CI':<21} {'p':>7} {'p_holm':>7}  verdict"]
    lines += [_row_line(r) for r in result["rows"]]
    for i, rows in enumerate(result.get("per_seed", [])):
        lines += ["", f"seed pair {i + 1}: A run {i + 1} vs B run {i + 1}"]
        lines += [_row_line(r) for r in rows]
    if result.get("across_seeds"):
        n = result["across_seeds"][0]["n"]
        lines += ["", f"across seeds: the {n} seed-pair differences, mean ± sd and a t interval ({n - 1} df): "
                      "retraining both counts, not only the users"]
        lines += [f"{r['metric']:<10} {r['mean']:+9.4f} ± {r['sd']:.4f}  "
                  + (f"[{r['lo']:+.4f}, {r['hi']:+.4f}]  {r['verdict']}" if "note" not in r
                     else f"{r['verdict']} ({r['note']})")
                  for r in result["across_seeds"]]
    lines += ["", "better/worse: the interval excludes 0; equivalent: it lies inside ±margin; "
              "inconclusive: neither (not evidence of no difference). † significant after Holm's "
              f"adjustment over the {len(result['rows'])} comparisons of one table."]
    return "\n".join(lines)


def _row_line(r: dict[str, Any]) -> str:
    return (f"{r['metric']:<10} {r['a']:8.4f} {r['b']:8.4f} {r['diff']:+9.4f}  "
            f"[{r['lo']:+.4f}, {r['hi']:+.4f}] {r['p']:7.4f} {r['p_holm']:7.4f}  {r['verdict']}"
            + (" †" if r["holm_significant"] else ""))
