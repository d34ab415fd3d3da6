"""A synthetic, seeded set of evaluate/train outputs, so the report can be rendered and tested
without training anything (tests, `benchmarks/screenshot_report.py`).

Writes, for each model, `results/<model>/metrics.json` in the evaluate stage's exact layout
(built by the same functions from synthetic ranks) and `models/<model>/train_log.tsv`, plus an
`ingest/report.json` with dataset statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import polars as pl
import torch

from mmrec import paths
from mmrec.evaluate.params import EvaluateConfig
from mmrec.evaluate.stage import build_metrics, ranks_frame, summarize_ranks
from mmrec.io import write_json, write_parquet
from mmrec.paths import RANKS_FILE


def write_fake_run(params: EvaluateConfig, root: Path, models: Sequence[str] | None = None, *,
                   n_users: int = 600, n_items: int = 900, epochs: int = 8, seed: int = 0) -> None:
    """Write fake outputs for `models` (default: all of train.models) under `root`."""
    g = torch.Generator().manual_seed(seed)
    models = list(params.train.models if models is None else models)
    item_pop = torch.zeros(n_items + 1, dtype=torch.long)
    # Long-tailed popularity with a cold tenth of the catalogue.
    item_pop[1:] = (200.0 / torch.arange(1, n_items + 1).float() ** 0.9).long().clamp_min(1)
    item_pop[torch.randperm(n_items, generator=g)[: n_items // 10] + 1] = 0
    hist_len = torch.randint(3, 15, (n_users,), generator=g)
    full = torch.zeros(n_users, 15, dtype=torch.long)
    for u in range(n_users):
        full[u, : hist_len[u]] = torch.randint(1, n_items + 1, (int(hist_len[u]),), generator=g)
    # one split, as in a real run: every model is evaluated on the same users and targets
    split_targets = {split: torch.randint(1, n_items + 1, (n_users,), generator=g) for split in ("valid", "test")}
    for i, model in enumerate(models):
        per_split, frames = {}, []
        quality = 1.0 + 0.25 * i
        for split in ("valid", "test"):
            targets = split_targets[split]
            # Better models draw smaller ranks; cold targets rank worse.
            scale = 300.0 / quality * torch.where(item_pop[targets] == 0, 3.0, 1.0)
            ranks = (torch.rand(n_users, generator=g) ** 2 * scale).long().clamp(0, n_items - 1) + 1
            per_split[split] = summarize_ranks(ranks, targets, full, item_pop, params.evaluate)
            frames.append(ranks_frame(split, torch.arange(n_users), targets, ranks))
        write_parquet(pl.concat(frames), paths.results_dir(params, model, root) / RANKS_FILE)
        write_json(build_metrics(model, per_split, params.evaluate, n_items),
                   paths.results_dir(params, model, root) / "metrics.json")
        ep = torch.arange(1, epochs + 1, dtype=torch.float64)
        log = {"epoch": list(range(1, epochs + 1)),
               "loss_ce": (6.0 / quality - 0.4 * ep.log()).tolist()}
        if "kdsr" in model or "odmt" in model:
            log["loss_kd"] = (0.8 * torch.exp(-ep / 3)).tolist()
        log["loss"] = [sum(v[e] for k, v in log.items() if k.startswith("loss_")) for e in range(epochs)]
        log["valid_recall@10"] = (0.05 * quality * (1 - torch.exp(-ep / 2))).tolist()
        for modality in ("text", "image"):
            start = 0.1 + 0.05 * i
            log[f"retention_item_{modality}"] = (start + (0.3 if "kdsr" in model else -0.05)
                                                 * (1 - torch.exp(-ep / 3))).tolist()
        lpath = paths.model_dir(params, model, root) / "train_log.tsv"
        lpath.parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame(log).write_csv(lpath, separator="\t")
    n_inter = int(hist_len.sum()) + 2 * n_users
    write_json({"statistics": {"users": n_users, "items": n_items, "interactions": n_inter,
                               "avg_length": n_inter / n_users,
                               "density": n_inter / (n_users * n_items)}},
               paths.ingest_dir(params, root) / "report.json")
