"""model.pt: the same weights give the same bytes; a checkpoint already read is not read again."""

from __future__ import annotations

import pytest
import torch

import models_fit as mf
from mmrec.models.checkpoint import load_model, read_checkpoint, save_checkpoint, save_torch
from mmrec.models.context import build_context
from mmrec.models.registry import build_model


def test_save_torch_is_byte_reproducible_whatever_the_file_name(tmp_path):
    payload = {"w": torch.arange(6.0).reshape(2, 3), "epoch": 3}
    a = save_torch(payload, tmp_path / "a" / "model.pt")
    b = save_torch(payload, tmp_path / "b" / "resume.pt")
    # the temp names differ on every call; DVC's hashes of model.pt must not
    assert a.read_bytes() == b.read_bytes()
    assert torch.equal(torch.load(b, weights_only=True)["w"], payload["w"])
    assert not list(tmp_path.rglob("*.tmp"))


def test_checkpoint_bytes_repeat_and_load_model_uses_a_checkpoint_already_read(tmp_path):
    mf.ts.write_dataset(tmp_path, n_items=20)
    p = mf.ts.params()
    ctx = build_context(p, "cpu", tmp_path, max_len=4, teachers=False, modalities=[])
    torch.manual_seed(0)
    model = build_model("sasrec", ctx, {"hidden": 8, "max_len": 4})
    dirs = [tmp_path / f"data/tiny/models/run{i}" for i in (1, 2)]
    for d in dirs:
        save_checkpoint(d / "model.pt", model, arch="sasrec", name="sasrec",
                        config=model.cfg.model_dump(mode="json"), ctx=ctx)
    assert (dirs[0] / "model.pt").read_bytes() == (dirs[1] / "model.pt").read_bytes()

    ckpt = read_checkpoint(dirs[0])
    (dirs[0] / "model.pt").unlink()  # load_model must not need the file again
    loaded = load_model(dirs[0], p, root=tmp_path, ckpt=ckpt)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def _write_token_features(root, p, n_items: int = 24) -> None:
    """Feature files with token states (the last item's text has padded tail tokens)."""
    import numpy as np

    from mmrec import paths
    from mmrec.features.store import features_table
    from mmrec.io import write_parquet

    rng = np.random.default_rng(0)
    for m, d in (("text", 12), ("image", 12)):
        tok = rng.standard_normal((n_items, 4, d)).astype(np.float32)
        mask = np.ones((n_items, 4), dtype=bool)
        mask[-1, 2:] = False
        table = features_table(np.arange(1, n_items + 1), tok.mean(1), np.ones(n_items, dtype=bool),
                               tok * mask[..., None], mask)
        write_parquet(table, paths.feature_path(p, m, root), metadata={"encoder": f"synthetic-{d}"})



@pytest.mark.parametrize("arch, over", [
    ("sasrec_lf", {"cold_id": "mask", "id_dropout": 0.2, "loss_norm": "cosine", "temperature": 0.07,
                   "whiten": ["text"]}),
    ("sasrec_ef", {"cold_id": "mask", "whiten": ["text", "image"]}),
    ("odmt", {"imt": False, "distill": False, "cold_id": "mask", "loss_norm": "cosine"}),
    ("odmt", {"imt_text_vector": True, "whiten": ["text"], "id_dropout": 0.3}),
    ("odmt", {"imt": "pooled", "distill": "branch_only"}),
])
def test_new_options_load_from_a_checkpoint(tmp_path, arch, over):
    mf.ts.write_dataset(tmp_path, n_items=24)
    p = mf.ts.params()
    tokens = arch == "odmt"
    if tokens:
        _write_token_features(tmp_path, p)
    else:
        mf.ts.write_features(tmp_path, p)
    ctx = build_context(p, "cpu", tmp_path, max_len=4, tokens=tokens, teachers=False)
    torch.manual_seed(0)
    cfg = {"hidden": 8, "max_len": 4, "heads": 2, **({"imt_layers": 1} if tokens else {}), **over}
    model = build_model(arch, ctx, cfg).eval()
    d = tmp_path / "data/tiny/models/m"
    save_checkpoint(d / "model.pt", model, arch=arch, name="m", config=model.cfg.model_dump(mode="json"), ctx=ctx)
    loaded = load_model(d, p, root=tmp_path)
    assert loaded.cfg == model.cfg
    with torch.no_grad():
        assert torch.allclose(loaded.item_repr(), model.item_repr(), atol=1e-6)
        hist = torch.tensor([[0, 3, 5, 7]])
        assert torch.allclose(loaded.user_repr(hist), model.user_repr(hist), atol=1e-6)
