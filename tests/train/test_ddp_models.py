"""Every registered model and the README's ablation entries train under DDP (2 gloo ranks).

DDP raises on the step after one that left a parameter without a gradient unless the model
declares `leaves_parameters_unused()`; two optimiser steps per case catch that, and equal
weights on both ranks afterwards show the gradients were all-reduced.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

import models_fit  # noqa: E402
import train_synth as ts  # noqa: E402

N_ITEMS, MAX_LEN = 24, 6


def _context(arch: str):
    return models_fit.full_context(arch, N_ITEMS, MAX_LEN)

BASE = {"hidden": 16, "layers": 1, "heads": 2, "max_len": MAX_LEN, "dropout": 0.1}
# (entry, arch, settings): the registered models with their params.yaml-style defaults, and the
# ablations the README lists (kdsr_plain and lf_paper verbatim, then the documented switches).
CASES = [
    ("kdsr_plain", "kdsr", {"skd": False, "ckd": False}),
    ("lf_paper", "sasrec_lf", {"fst": "transformer"}),
    ("ef_transformer", "sasrec_ef", {"fst": "transformer"}),
    ("kdsr_no_skd", "kdsr", {"skd": False}),
    ("kdsr_no_ckd", "kdsr", {"ckd": False}),
    ("kdsr_gru", "kdsr", {"backbone": "gru4rec"}),
    ("kdsr_id_cands", "kdsr", {"candidates": "id", "fusion": "mean", "skd_form": "reference"}),
    ("odmt_no_id", "odmt", {"use_id": False}),
    ("odmt_no_imt", "odmt", {"imt": False}),
    ("odmt_no_distill", "odmt", {"distill": False}),
    ("odmt_id_none", "odmt", {"id_init": "none", "id_mask": False}),
    ("odmt_ref", "odmt", {"kd_loss": "ce", "detach_teacher": False, "loss": "full_ce"}),
    ("sasrec_inbatch", "sasrec", {"loss": "inbatch"}),
    ("kdsr_on_table", "kdsr", {"kd_on": "table", "ckd": False}),
    ("kdsr_no_projection", "kdsr", {"skd_projection": False, "kd_on": "modality"}),
    ("odmt_pooled", "odmt", {"imt": "pooled", "distill": "branch_only"}),
    ("odmt_levers", "odmt", {"cold_id": "mask", "id_dropout": 0.3, "loss_norm": "cosine",
                             "temperature": 0.07, "imt_text_vector": True, "whiten": ["text"]}),
    ("lf_levers", "sasrec_lf", {"cold_id": "mask", "id_dropout": 0.3, "loss_norm": "cosine"}),
    ("ef_levers", "sasrec_ef", {"cold_id": "mask", "id_dropout": 0.3, "whiten": ["image"]}),
    ("kdsr_levers", "kdsr", {"cold_id": "mask", "id_dropout": 0.3, "loss_norm": "cosine", "loss": "inbatch"}),
]


def _cases() -> list[tuple[str, str, dict]]:
    from mmrec.models.registry import model_class, model_names

    # a model with nothing to train (content_knn) never takes a DDP step
    return [(name, name, {}) for name in model_names() if model_class(name).trainable] + CASES


def _worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from mmrec.models.registry import build_model
    from mmrec.train.ddp import wrap_for_training

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    results = {}
    try:
        seqs = torch.from_numpy(ts.sequences(16, N_ITEMS, MAX_LEN + 1))
        mine = seqs[rank::world]                                        # each rank its own users
        for entry, arch, over in _cases():
            try:
                torch.manual_seed(0)                                    # same init on every rank
                ctx = _context(arch)
                ctx.world_size = world
                model = build_model(arch, ctx, {**BASE, **over}, section=entry)
                module = wrap_for_training(model, torch.device("cpu"))
                opt = torch.optim.SGD(model.parameters(), lr=0.1)
                model.train()
                for rows in (slice(0, 4), slice(4, 8)):
                    loss, _ = module(mine[rows], 5)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                # once-per-epoch diagnostics run on every rank (their losses may gather)
                from mmrec.train.loop import diagnostics_row

                diag = diagnostics_row(model, mine[0:4], 5)
                assert all(isinstance(v, float) for v in diag.values()), diag
                flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
                results[entry] = flat
            except Exception:  # report every case, not only the first failure
                results[entry] = traceback.format_exc()
        torch.save(results, f"{out}.{rank}")
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_every_model_and_ablation_trains_under_ddp(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "res")
    mp.spawn(_worker, args=(2, f"file://{tmp_path / 'store'}", out), nprocs=2, join=True)
    res = [torch.load(f"{out}.{r}", weights_only=False) for r in range(2)]
    assert set(res[0]) == {e for e, _, _ in _cases()}
    failed = {e: r for e, r in res[0].items() if isinstance(r, str)}
    assert not failed, "\n".join(f"{e}:\n{r[-1500:]}" for e, r in failed.items())
    for entry, flat in res[0].items():
        assert torch.equal(flat, res[1][entry]), f"{entry}: ranks diverged (gradients not all-reduced)"


def test_models_declare_unused_parameters_where_a_step_leaves_them():
    """The declaration matches what one single-process step actually leaves without a gradient."""
    from mmrec.models.registry import build_model

    seqs = torch.from_numpy(ts.sequences(8, N_ITEMS, MAX_LEN + 1))
    for entry, arch, over in _cases():
        torch.manual_seed(0)
        ctx = _context(arch)
        model = build_model(arch, ctx, {**BASE, **over}, section=entry)
        model.train()
        loss, _ = model.loss(ts_batch(seqs), 5)
        loss.backward()
        unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert model.leaves_parameters_unused() == bool(unused), (entry, unused)


def ts_batch(seqs: torch.Tensor):
    from mmrec.models.base import SeqBatch

    return SeqBatch(seqs)
