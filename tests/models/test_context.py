"""build_context: frozen token states stay on the CPU; pooled vectors go to the model device."""

from __future__ import annotations

import numpy as np
import torch

import models_fit as mf
from mmrec import paths
from mmrec.features.store import features_table
from mmrec.io import write_parquet
from mmrec.models.context import build_context
from mmrec.models.tokens import TokenStore


def _project(tmp_path, n_items: int = 24):
    mf.ts.write_dataset(tmp_path, n_items=n_items)
    p = mf.ts.params()
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((n_items, 5, 6)).astype(np.float32)
    table = features_table(np.arange(1, n_items + 1), tokens[:, 0], np.ones(n_items, bool),
                           tokens, np.ones((n_items, 5), bool))
    write_parquet(table, paths.feature_path(p, "text", tmp_path), metadata={"encoder": "fake"})
    mf.ts.mark_absent(tmp_path, p, "image")
    return p


def test_a_modality_neither_extracted_nor_recorded_absent_is_an_error(tmp_path):
    """After a failed (or never run) image extraction, a multimodal model must not quietly
    train on text alone: only extract's explicit record makes a modality absent."""
    import pytest

    p = _project(tmp_path)
    (paths.feature_path(p, "image", tmp_path).parent / "summary.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"features for image \(required by data.require\)"):
        build_context(p, "cpu", tmp_path, teachers=False)
    assert build_context(p, "cpu", tmp_path, teachers=False, modalities=[]).features == {}


def test_token_states_stay_on_the_cpu_and_move_per_batch(tmp_path):
    p = _project(tmp_path)
    # "meta" stands in for an accelerator: anything moved there loses its data
    ctx = build_context(p, "meta", tmp_path, tokens=True, teachers=False)
    text = ctx.features["text"]
    assert text.vector.device.type == "meta" and ctx.item_pop.device.type == "meta"
    assert text.tokens.device.type == "cpu" and text.token_mask.device.type == "cpu"
    # the store (built from a CPU context: meta tensors hold no data to copy back)
    text = build_context(p, "cpu", tmp_path, tokens=True, teachers=False).features["text"]
    store = TokenStore.from_features(text, "text", text_tokens=3, image_grid=0, owner="test")
    assert store.tokens.device.type == "cpu" and store.tokens.shape == (25, 3, 6)
    assert store.tokens.is_pinned() == torch.cuda.is_available()
    tok, msk = store.gather(torch.tensor([3, 1]), torch.device("meta"))
    assert tok.device.type == "meta" and tok.shape == (2, 3, 6) and msk.shape == (2, 3)
    # the real values: rows of the table, gathered on the CPU
    tok, _ = store.gather(torch.tensor([3, 1]), torch.device("cpu"))
    assert torch.equal(tok, store.tokens[[3, 1]].float())


def test_load_model_takes_the_checkpoint_settings_and_rejects_other_encoders(tmp_path):
    import pytest

    from mmrec.models.checkpoint import load_model, save_checkpoint
    from mmrec.models.registry import build_model

    p = _project(tmp_path)
    ctx = build_context(p, "cpu", tmp_path, max_len=4, teachers=False)
    model = build_model("sasrec_ef", ctx, {"hidden": 8, "max_len": 4, "fst": "linear"})
    mdir = tmp_path / "data/tiny/models/sasrec_ef"
    save_checkpoint(mdir / "model.pt", model, arch="sasrec_ef", name="sasrec_ef",
                    config=model.cfg.model_dump(mode="json"), ctx=ctx)
    loaded = load_model(mdir, p, root=tmp_path)     # params say hidden 16, max_len 8
    assert loaded.cfg.max_len == 4 and loaded.cfg.hidden == 8
    ckpt = torch.load(mdir / "model.pt", weights_only=True)
    ckpt["context"]["encoders"] = {"text": "another-encoder"}
    torch.save(ckpt, mdir / "model.pt")
    with pytest.raises(ValueError, match="encoders .*another-encoder"):
        load_model(mdir, p, root=tmp_path)


def test_without_tokens_drops_only_the_token_states():
    import torch

    from mmrec.features.types import ModalityFeatures
    from mmrec.models.base import ModelContext
    from mmrec.models.context import context_summary, without_tokens

    f = ModalityFeatures(torch.ones(4, 3), torch.ones(4, dtype=torch.bool), torch.ones(4, 2, 3, dtype=torch.float16),
                         torch.ones(4, 2, dtype=torch.bool), "enc")
    ctx = ModelContext(n_items=3, max_len=5, item_pop=torch.arange(4), features={"text": f})
    lean = without_tokens(ctx)
    assert lean.features["text"].tokens is None and lean.features["text"].token_mask is None
    assert lean.features["text"].vector is f.vector and ctx.features["text"].tokens is not None
    assert context_summary(lean) == context_summary(ctx)
