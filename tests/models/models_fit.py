"""Shared helper of the model tests: overfit a model on a tiny deterministic dataset."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

import train_synth as ts  # noqa: E402
from mmrec.metrics.ranking import evaluate_model  # noqa: E402
from mmrec.models.registry import build_model  # noqa: E402
from mmrec.train.loop import train_model  # noqa: E402
from mmrec.train.params import TrainCommon  # noqa: E402

N_ITEMS, N_USERS, LENGTH = 40, 48, 9


def add_tokens(ctx, n_tok: int = 5, seed: int = 0) -> None:
    """Give every modality of `ctx` token states: token 0 = the pooled vector, then noisy copies;
    text items have a random number of padded tail tokens."""
    g = torch.Generator().manual_seed(seed)
    for m, f in ctx.features.items():
        n, d = f.vector.shape
        tok = f.vector[:, None, :] + 0.3 * torch.randn(n, n_tok, d, generator=g)
        tok[:, 0] = f.vector
        mask = f.has_feature[:, None].expand(n, n_tok).clone()
        if m == "text":
            lens = torch.randint(1, n_tok + 1, (n,), generator=g)
            mask &= torch.arange(n_tok)[None, :] < lens[:, None]
        f.tokens, f.token_mask = (tok * mask[..., None]).half(), mask


def full_context(arch: str, n_items: int, max_len: int):
    """The walk dataset's context with token states for every modality and, when `arch` needs
    a teacher, real PairTeachers: enough to build any registered model with any setting."""
    from mmrec.models.registry import model_class
    from mmrec.teacher import PairTeacher

    ctx = ts.context(n_items, max_len)
    add_tokens(ctx)
    if model_class(arch).needs_teacher:
        g = torch.Generator().manual_seed(3)
        ctx.teachers = {m: PairTeacher(torch.rand(n_items + 1, 16, generator=g),
                                       torch.randn(5, 4, generator=g), "cosine", 4) for m in ctx.features}
    return ctx


def overfit(arch: str, tmp_path: Path, modalities=("text", "image"), epochs: int = 40,
            tokens: bool = False, **cfg):
    """(model, train log rows, train-set metrics) after training `arch` on the walk dataset."""
    torch.manual_seed(0)
    seqs = ts.sequences(N_USERS, N_ITEMS, LENGTH)
    ctx = ts.context(N_ITEMS, max_len=LENGTH - 1, modalities=modalities,
                     teachers=arch.startswith("kdsr"), seqs=seqs)
    if tokens:
        add_tokens(ctx)
    base = {"hidden": 32, "layers": 1, "heads": 2, "dropout": 0.0, "max_len": LENGTH - 1}
    model = build_model(arch, ctx, {**base, **cfg})
    seq = torch.from_numpy(seqs)
    common = TrainCommon(epochs=epochs, batch_size=16, lr=1e-2, weight_decay=0.0, patience=epochs,
                         retention_pairs=200, max_len=LENGTH - 1)
    result = train_model(model, ctx, seq, None, common, tmp_path, seed=1, arch=arch, name=arch,
                         config=model.cfg.model_dump(mode="json"), progress=False)
    metrics = evaluate_model(model, seq[:, :-1], seq[:, -1], ks=(10,), mask_history=False)
    return model, result.log, metrics
