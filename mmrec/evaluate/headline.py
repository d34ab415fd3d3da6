"""Headline metrics: a few numbers per model in `metrics/<model>.json`, tracked by git.

The full `results/<model>/metrics.json` (every k, breakdowns, settings) stays under data/, a
DVC output. The headline file is what `dvc metrics show/diff` and `dvc exp show` read: small
(a handful of keys, so the table fits a terminal) and committed with each experiment, so
comparisons work against HEAD and between experiments (DVC's example-get-started layout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from mmrec.io import write_json

SPLITS = ("test", "valid")
METRICS = ("recall", "ndcg", "mrr")
HEADLINE_K = 10


def split_metric(doc: Mapping[str, Any], split: str, name: str) -> Optional[float]:
    """`name` (e.g. `recall@10`) of `split` in a metrics.json document, or None when absent.

    Reads both layouts of metrics.json: flat `<split>_<name>` keys and a `<split>` mapping."""
    nested = doc.get(split)
    if isinstance(nested, Mapping) and isinstance(nested.get(name), (int, float)):
        return float(nested[name])
    flat = doc.get(f"{split}_{name}")
    return float(flat) if isinstance(flat, (int, float)) else None


def headline(doc: Mapping[str, Any], k: int = HEADLINE_K) -> dict[str, dict[str, float]]:
    """{"test": {"recall@10": ..., "ndcg@10": ..., "mrr@10": ...}, "valid": {...}} of a metrics.json
    document (a split that was not evaluated is left out); raises naming the key when no split
    has a metric at `k`."""
    out: dict[str, dict[str, float]] = {}
    for split in SPLITS:
        row = {f"{m}@{k}": split_metric(doc, split, f"{m}@{k}") for m in METRICS}
        if any(v is not None for v in row.values()):
            out[split] = {name: round(v, 6) for name, v in row.items() if v is not None}
    if not out:
        raise KeyError(f"metrics have no {'/'.join(SPLITS)} {'/'.join(METRICS)}@{k} "
                       f"(evaluate.ks must include {k})")
    return out


def write_headline(doc: Mapping[str, Any], path: str | Path, ks: tuple[int, ...] | list[int] = (HEADLINE_K,)) -> Path:
    """Write the headline of `doc` to `path` (atomically) at k=10, or the smallest of `ks`
    when 10 is not evaluated."""
    k = HEADLINE_K if HEADLINE_K in ks else min(ks)
    return write_json(headline(doc, k), path)
