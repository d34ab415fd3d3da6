"""Stage `evaluate@<model>`: full-ranking metrics of one trained model on valid and test.

Writes `results/<model>/metrics.json`: flat keys (`test_recall@10`, `valid_ndcg@20`, ...) that
`dvc metrics show` prints as a table, and a `details` list with the per-split overall metrics,
counts, repeat targets and the popularity-group and history-length breakdowns.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import polars as pl
import torch
from tqdm import tqdm

from mmrec import paths
from mmrec.data.items import load_item_pop
from mmrec.evaluate.headline import write_headline
from mmrec.evaluate.params import EvaluateConfig
from mmrec.io import pick_device, write_json, write_parquet
from mmrec.metrics.breakdown import (
    grouped_metrics,
    history_bucket_labels,
    history_buckets,
    popularity_group_info,
    popularity_groups,
)
from mmrec.metrics.intervals import metric_intervals
from mmrec.metrics.params import EvaluateParams, protocol_label
from mmrec.metrics.formulas import metrics_from_ranks
from mmrec.metrics.ranking import TIE_RTOL, count_repeats, rank_model
from mmrec.models import checkpoint
from mmrec.paths import RANKS_FILE

SPLITS = ("valid", "test")


class EvalSplitLike(Protocol):
    """What `mmrec.data.sequences.load_eval_split` returns (duck-typed so tests can fake it)."""

    user_idx: torch.Tensor      # [U]
    histories: torch.Tensor     # [U, L] left-padded model input (most recent last)
    full_history: torch.Tensor  # [U, H] every earlier item, 0-padded
    targets: torch.Tensor       # [U]


def split_ranks(model: torch.nn.Module, split: EvalSplitLike, cfg: EvaluateParams,
                device: torch.device | str | None = None, desc: str = "evaluate") -> torch.Tensor:
    """[U] 1-based ranks of the split's targets under `cfg.mask_history`, which masks
    `split.full_history` (every earlier item, not only the truncated model input)."""
    n_users = int(split.targets.shape[0])
    with tqdm(total=n_users, desc=desc, unit="user", leave=False, disable=n_users < 5000) as bar:
        return rank_model(model, split.histories, split.targets, mask_history=cfg.mask_history,
                          mask_items=split.full_history, batch_users=cfg.batch_users,
                          item_chunk=cfg.item_chunk, device=device, progress=bar.update)


def summarize_ranks(ranks: torch.Tensor, targets: torch.Tensor, full_history: torch.Tensor,
                    item_pop: torch.Tensor, cfg: EvaluateParams) -> dict[str, Any]:
    """Overall metrics, repeat count and breakdowns for ranks [U] of targets [U].

    full_history: [U, H] every earlier item (0-padded), for repeats and history lengths.
    item_pop:     [N+1] training popularity, for the popularity groups.
    """
    n_users = int(targets.shape[0])
    ranks = ranks.cpu()
    ks = cfg.ks
    item_group = popularity_groups(item_pop, cfg.popularity_groups)   # [N+1]
    target_group = item_group[targets.long().cpu()]            # [U]
    pop_info = {g["group"]: g for g in popularity_group_info(item_pop, item_group, cfg.popularity_groups)}
    by_pop = grouped_metrics(ranks, target_group, cfg.popularity_groups + 1, ks,
                             labels=[pop_info[g]["label"] for g in range(cfg.popularity_groups + 1)])
    for row in by_pop:
        info = pop_info[row["group"]]
        row.update(n_items=info["n_items"], n_train_min=info["n_train_min"],
                   n_train_max=info["n_train_max"])
    lengths = (full_history > 0).sum(-1).cpu()                 # [U]
    bucket = history_buckets(lengths, cfg.history_buckets)
    labels = history_bucket_labels(cfg.history_buckets)
    by_len = grouped_metrics(ranks, bucket, len(labels), ks, labels=labels)
    repeat = (full_history.long() == targets.long()[:, None]).any(-1).cpu()   # [U]
    k = 10 if 10 in ks else ks[0]
    return {
        "n_users": n_users,
        "overall": metrics_from_ranks(ranks, ks),
        # 95% percentile bootstrap over users (mmrec.metrics.intervals)
        "ci95": metric_intervals(ranks.numpy(), [f"recall@{k}", f"ndcg@{k}"], cfg.bootstrap),
        "repeat_targets": count_repeats(targets, full_history),
        "overall_without_repeats": metrics_from_ranks(ranks[~repeat], ks),
        "mean_rank": float(ranks.double().mean()) if n_users else None,
        "by_popularity": by_pop,
        "by_history_length": by_len,
    }


def build_metrics(model_name: str, per_split: dict[str, dict[str, Any]], cfg: EvaluateParams,
                  n_items: int) -> dict[str, Any]:
    """The metrics.json document: flat `<split>_<metric>` keys first, then the details."""
    doc: dict[str, Any] = {"model": model_name}
    for split, res in per_split.items():
        for key, value in res["overall"].items():
            doc[f"{split}_{key}"] = value
        doc[f"{split}_users"] = res["n_users"]
        doc[f"{split}_repeat_targets"] = res["repeat_targets"]
    # A list, not a mapping, so `dvc metrics show` keeps its table to the flat keys above.
    doc["details"] = [{"split": split, **res} for split, res in per_split.items()]
    # Only scalars that help reading `dvc metrics show` stay mappings; lists are not shown there.
    for split, res in per_split.items():
        for metric, ci in res["ci95"].items():
            doc[f"{split}_{metric}_ci95"] = [ci["lo"], ci["hi"]]
    doc["protocol"] = protocol_label(cfg)
    doc["settings"] = {"mask_history": cfg.mask_history, "n_items": n_items, "ks": list(cfg.ks),
                       "history_buckets": list(cfg.history_buckets),
                       "ties": [f"pessimistic, relative tolerance {TIE_RTOL:g}"]}
    return doc


def ranks_frame(split: str, user_idx: torch.Tensor, targets: torch.Tensor, ranks: torch.Tensor) -> pl.DataFrame:
    """One split's per-user ranks as rows of ranks.parquet (user_idx, split, target, rank)."""
    return pl.DataFrame({"user_idx": user_idx.numpy().astype("int32"), "split": [split] * len(ranks),
                         "target": targets.numpy().astype("int32"), "rank": ranks.numpy().astype("int32")})


def _load_eval_split(ingest_dir: Path, split: str, max_len: int) -> EvalSplitLike:
    from mmrec.data.sequences import load_eval_split

    return load_eval_split(ingest_dir, split, max_len)


def run(params: EvaluateConfig, root: Path = Path("."), model: str | None = None,
        splits: tuple[str, ...] = SPLITS) -> dict[str, Any]:
    """Evaluate trained model `model` on `splits` and write `results/<model>/metrics.json`.

    Returns a summary (output path, headline metrics). With `model=None`, evaluates every
    `train.models` entry that has a model.pt and returns {model: summary}, plus `skipped`:
    the entries without one.
    """
    if model is None:
        have, skipped = paths.trained_models(params, params.train.models, root)
        return {**{name: evaluate_one(params, name, Path(root), splits) for name in have}, "skipped": skipped}
    return evaluate_one(params, model, Path(root), splits)


def evaluate_one(params: EvaluateConfig, model: str, root: Path, splits: tuple[str, ...] = SPLITS) -> dict[str, Any]:
    """`run` for one model."""
    paths.check_model(params.train.models, model)
    t0 = time.perf_counter()
    device = pick_device(params.device)
    mdir = paths.model_dir(params, model, root)
    if not (mdir / "model.pt").exists():
        raise FileNotFoundError(f"{mdir / 'model.pt'}: not found (run `mmrec run train {model}` first)")
    net = checkpoint.load_model(mdir, params, device, root=root)
    item_pop = load_item_pop(paths.ingest_dir(params, root) / "items.parquet")
    n_items = int(net.item_repr().shape[0]) - 1
    if n_items != item_pop.shape[0] - 1:
        raise ValueError(f"model {model!r} scores {n_items} items but items.parquet has "
                         f"{item_pop.shape[0] - 1}: retrain after re-ingesting")
    max_len = checkpoint.model_max_len(net)
    per_split, frames = {}, []
    for split in splits:
        data = _load_eval_split(paths.ingest_dir(params, root), split, max_len)
        ranks = split_ranks(net, data, params.evaluate, device, desc=f"{model} {split}")
        per_split[split] = summarize_ranks(ranks, data.targets, data.full_history, item_pop, params.evaluate)
        frames.append(ranks_frame(split, data.user_idx, data.targets, ranks))
    doc = build_metrics(model, per_split, params.evaluate, n_items)
    out = paths.results_dir(params, model, root) / "metrics.json"
    # Per-user ranks: what the report's paired intervals (and any later analysis) resample.
    write_parquet(pl.concat(frames), out.parent / RANKS_FILE)
    write_json(doc, out)
    write_headline(doc, paths.headline_path(model, root), params.evaluate.ks)  # metrics/<model>.json
    k = 10 if 10 in params.evaluate.ks else params.evaluate.ks[0]
    summary = {"model": model, "path": str(out), "seconds": round(time.perf_counter() - t0, 2),
               "n_items": n_items}
    for split in splits:
        summary[f"{split}_users"] = per_split[split]["n_users"]
        summary[f"{split}_recall@{k}"] = per_split[split]["overall"][f"recall@{k}"]
        summary[f"{split}_ndcg@{k}"] = per_split[split]["overall"][f"ndcg@{k}"]
    return summary
