"""ODMT training speed on a synthetic catalogue of the embedded sample's size, through the real
training loop (mmrec.train.loop.train_model: train + valid ranking + retention per epoch).

    .venv/bin/python benchmarks/odmt.py [--items 2000] [--users 3000] [--epochs 3]

Prints seconds per epoch (train and total), the IMT's unique-item saving, and the per-step time
of the unique-item IMT versus running it on every slot. Token shapes follow the default encoders:
text all-MiniLM-L6-v2 (32 x 384), image EfficientNet-lite0 (1 + 49 tokens x 1280).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from mmrec.features.types import ModalityFeatures
from mmrec.models.base import ModelContext, SeqBatch
from mmrec.models.registry import build_model
from mmrec.data.sequences import EvalSplit
from mmrec.train.loop import EvalSettings, train_model
from mmrec.train.params import TrainCommon


def synthetic(n_items: int, n_users: int, hist: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def feats(T: int, d: int, pad: bool) -> ModalityFeatures:
        tok = torch.randn(n_items + 1, T, d, generator=g).half()
        mask = torch.ones(n_items + 1, T, dtype=torch.bool)
        if pad:
            lens = torch.randint(4, T + 1, (n_items + 1,), generator=g)
            mask = torch.arange(T)[None] < lens[:, None]
        has = torch.ones(n_items + 1, dtype=torch.bool)
        has[0] = False
        return ModalityFeatures(tok[:, 0].float(), has, tok, mask, "synthetic")

    # Zipf-like popularity so batches repeat items as real data does
    probs = 1.0 / torch.arange(1, n_items + 1).float() ** 0.8
    lens = torch.randint(5, hist + 1, (n_users,), generator=g)
    items = torch.multinomial(probs, n_users * hist, replacement=True, generator=g).view(n_users, hist) + 1
    full = items * (torch.arange(hist)[None] >= (hist - lens)[:, None])   # left-padded [U, hist]
    train = full[:, :-2]                                               # leave-one-out
    valid_hist, valid_tgt = full[:, :-2], full[:, -2]
    pop = torch.bincount(train.reshape(-1), minlength=n_items + 1)
    pop[0] = 0
    ctx = ModelContext(n_items=n_items, max_len=hist - 3, item_pop=pop,
                       features={"text": feats(32, 384, True), "image": feats(50, 1280, False)})
    valid = EvalSplit(torch.arange(n_users), valid_hist[:, -(hist - 3):], valid_hist, valid_tgt)
    return ctx, train[:, -(hist - 2):], valid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--imt-layers", type=int, default=1)
    ap.add_argument("--text-tokens", type=int, default=16)
    ap.add_argument("--image-grid", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    ctx, train_seq, valid = synthetic(args.items, args.users, 15)
    cfg = {"hidden": args.hidden, "layers": 2, "heads": 2, "dropout": 0.2, "max_len": 12,
           "loss": "inbatch", "imt_layers": args.imt_layers, "imt_heads": 2,
           "text_tokens": args.text_tokens, "image_grid": args.image_grid, "rampup_epochs": 5}
    model = build_model("odmt", ctx, cfg)
    common = TrainCommon(epochs=args.epochs, batch_size=256, patience=100, max_len=12,
                         retention_pairs=20000, hidden=args.hidden)
    print(f"threads={torch.get_num_threads()} items={args.items} users={args.users} "
          f"train_windows={tuple(train_seq.shape)} params={sum(p.numel() for p in model.parameters())}")

    # unique-item IMT vs per-slot IMT on one training batch
    batch = SeqBatch(train_seq[:256])
    uniq = torch.unique(batch.seq)
    model.eval()
    with torch.no_grad():
        for label, ids in (("unique", uniq), ("per-slot", batch.seq.reshape(-1))):
            model.item_vectors(ids)
            t = time.perf_counter()
            for _ in range(3):
                model.item_vectors(ids)
            print(f"IMT forward {label:8s}: {ids.numel():5d} items  {(time.perf_counter() - t) / 3 * 1000:.1f} ms")
    model.train()

    with tempfile.TemporaryDirectory() as tmp:
        res = train_model(model, ctx, train_seq, valid, common, Path(tmp), seed=0, arch="odmt",
                          name="odmt", config=model.cfg.model_dump(mode="json"),
                          eval_settings=EvalSettings(), progress=False)
    for row in res.log:
        print(f"epoch {row['epoch']}: train {row['train_seconds']:.1f}s  total {row['epoch_seconds']:.1f}s  "
              f"loss {row['loss']:.3f}  valid recall@10 {row.get('valid_recall@10', float('nan')):.4f}")
    per_epoch = sum(r["epoch_seconds"] for r in res.log) / len(res.log)
    print(f"mean epoch {per_epoch:.1f}s -> 20 epochs ~ {20 * per_epoch:.0f}s")


if __name__ == "__main__":
    main()
