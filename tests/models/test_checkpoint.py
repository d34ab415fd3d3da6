"""model.pt: the same weights give the same bytes; a checkpoint already read is not read again."""

from __future__ import annotations

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
