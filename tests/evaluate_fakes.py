"""Small fakes shared by the evaluate tests (a SeqRecModel and an EvalSplit)."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch

from mmrec.models.base import SeqBatch, SeqRecModel


class FakeModel(SeqRecModel):
    """Integer-valued item table; a user is the sum of their history items' vectors.

    Integer vectors make every score exact in float32, so ties are real ties.
    """

    def __init__(self, n_items: int, dim: int = 4, seed: int = 0, levels: int = 3, max_len: int = 5) -> None:
        super().__init__()
        self.cfg = SimpleNamespace(max_len=max_len)   # what the evaluator reads of a model config
        g = torch.Generator().manual_seed(seed)
        table = torch.randint(-levels, levels + 1, (n_items + 1, dim), generator=g).float()
        table[0] = 0
        self.table = torch.nn.Parameter(table)

    def item_repr(self) -> torch.Tensor:
        return self.table

    def user_repr(self, history: torch.Tensor) -> torch.Tensor:
        return self.table[history].sum(1)

    def loss(self, batch: SeqBatch, epoch: int):
        return self.table.sum() * 0, {}


@dataclass
class FakeSplit:
    user_idx: torch.Tensor
    histories: torch.Tensor
    full_history: torch.Tensor
    targets: torch.Tensor


def random_split(n_users: int, n_items: int, max_len: int, seed: int = 0, repeat_every: int = 5) -> FakeSplit:
    """Random users with full histories of varying length; every `repeat_every`-th target repeats
    a history item."""
    g = torch.Generator().manual_seed(seed)
    hist_len = 2 * max_len
    full = torch.zeros(n_users, hist_len, dtype=torch.long)
    targets = torch.randint(1, n_items + 1, (n_users,), generator=g)
    for u in range(n_users):
        n = int(torch.randint(1, hist_len + 1, (1,), generator=g))
        full[u, :n] = torch.randint(1, n_items + 1, (n,), generator=g)
        if u % repeat_every == 0:
            targets[u] = full[u, n - 1]
    # Model input: the last max_len items of the full history, left-padded.
    hist = torch.zeros(n_users, max_len, dtype=torch.long)
    for u in range(n_users):
        items = full[u][full[u] > 0][-max_len:]
        hist[u, max_len - len(items):] = items
    return FakeSplit(torch.arange(n_users), hist, full, targets)


def tiny_params(models=("sasrec", "kdsr"), **evaluate):
    """Params for a dataset named `tiny` (validated like params.yaml)."""
    from mmrec.config import parse_params

    raw = {"data": {"name": "tiny"}, "device": "cpu",
           "train": {"models": list(models), "common": {"max_len": 5}},
           "evaluate": {"ks": [1, 5, 10], "popularity_groups": 2, "history_buckets": [3, 6],
                        "bootstrap": 300, **evaluate}}
    return parse_params(raw)


def write_items(root, n_items: int, seed: int = 0):
    """A minimal items.parquet under data/tiny/ingest/ (a third of the items are cold)."""
    import polars as pl

    from mmrec.io import write_parquet

    g = torch.Generator().manual_seed(seed)
    n_train = torch.randint(0, 20, (n_items,), generator=g)
    n_train[::3] = 0
    df = pl.DataFrame({
        "item_idx": pl.Series(range(1, n_items + 1), dtype=pl.Int32),
        "item_id": [f"I{i:04d}" for i in range(1, n_items + 1)],
        "text": [f"item number {i}" for i in range(1, n_items + 1)],
        "image_path": [None if i % 4 == 0 else f"images/I{i:04d}.jpg" for i in range(1, n_items + 1)],
        "n_train": pl.Series(n_train.tolist(), dtype=pl.Int32),
    })
    path = root / "data" / "tiny" / "ingest" / "items.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(df, path)
    return df


def write_interactions(root, n_users: int, n_items: int, seed: int = 0, max_history: int = 9):
    """A minimal interactions.parquet under data/tiny/ingest/ as ingest writes it (sorted by
    user then time): user ids are random strings, numbered in sorted-id order like ingest does.
    User 0 (in id order) has interacted with every item but two."""
    import random

    import polars as pl

    from mmrec.io import write_parquet

    rng = random.Random(seed)
    ids = sorted({f"U{rng.randrange(10**6):06d}" for _ in range(3 * n_users)})[:n_users]
    rows = []
    for u, uid in enumerate(ids):
        items = (list(range(1, n_items - 1)) if u == 0 else
                 [rng.randrange(1, n_items + 1) for _ in range(rng.randrange(1, max_history + 1))])
        rows += [(u, uid, i, 1000 * u + t) for t, i in enumerate(items)]
    df = pl.DataFrame(rows, schema={"user_idx": pl.Int32, "user_id": pl.String, "item_idx": pl.Int32,
                                    "timestamp": pl.Int64}, orient="row")
    path = root / "data" / "tiny" / "ingest" / "interactions.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(df, path)
    return df


def write_stand_in_checkpoint(path, tag: bytes = b"placeholder", modalities=(), teachers=()) -> None:
    """A model.pt the export can read the context of (tests patch the model loader itself); its
    bytes vary with `tag`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "arch": "sasrec", "config": {}, "tag": tag,
                "context": {"modalities": list(modalities), "teachers": list(teachers)}}, path)


def write_trained_project(root, n_users: int, n_items: int, weights: bytes = b"placeholder", **context) -> None:
    """Items, interactions and a stand-in `models/sasrec/model.pt` (its bytes are what the
    export fingerprints; tests patch the loader) of the dataset `tiny` under `root`."""
    write_items(root, n_items)
    write_interactions(root, n_users, n_items)
    write_stand_in_checkpoint(root / "data" / "tiny" / "models" / "sasrec" / "model.pt", weights, **context)


def export_tiny_project(root, monkeypatch, n_users: int = 30, n_items: int = 15, **context):
    """A tiny project with sasrec's export (k 6, 4 users per row group, FakeModel behind the
    stage's patched loader): (root, params, the export folder)."""
    import mmrec.serving.export as export
    from mmrec.serving.params import RecommendParams
    from mmrec.models import checkpoint

    write_trained_project(root, n_users, n_items, weights=b"weights-v1", **context)
    params = tiny_params().model_copy(update={"recommend": RecommendParams(k=6, row_group_size=4)})
    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: FakeModel(n_items, dim=4, seed=1, max_len=5))
    export.run(params, root, "sasrec")
    return root, params, root / "data" / "tiny" / "recommendations" / "sasrec"
