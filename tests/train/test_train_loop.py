import math

import torch
import train_synth as ts

from mmrec.data.sequences import EvalSplit
from mmrec.models.registry import build_model
from mmrec.train.loop import epoch_order, train_model, write_log
from mmrec.train.params import TrainCommon


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    seqs = torch.from_numpy(ts.sequences(32, 30, 8))
    ctx = ts.context(30, max_len=7, modalities=())
    model = build_model("sasrec", ctx, {"hidden": 16, "layers": 1, "max_len": 7})
    # Validation asks for an item no walk ever leads to from these histories: no improvement
    # after the first epoch is possible beyond chance, so patience ends the run.
    valid = EvalSplit(torch.arange(32), seqs[:, :-1], seqs[:, :-1], seqs[:, 0])
    common = TrainCommon(epochs=30, batch_size=8, patience=2, lr=1e-4, max_len=7, retention_pairs=100)
    res = train_model(model, ctx, seqs, valid, common, tmp_path, seed=3, arch="sasrec", name="sasrec",
                      config=model.cfg.model_dump())
    assert res.stopped_early and res.epochs_run < 30
    assert res.epochs_run - res.best_epoch == 2
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    assert ckpt["epoch"] == res.best_epoch
    best = max(r["valid_recall@10"] for r in res.log)
    assert ckpt["valid"]["valid_recall@10"] == best == res.best_metric


def test_epoch_order_is_seeded_and_varies_by_epoch():
    a, b = epoch_order(50, 1, 1), epoch_order(50, 1, 1)
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(50))
    assert not torch.equal(a, epoch_order(50, 1, 2))


def test_write_log_unions_columns_and_writes_nan(tmp_path):
    write_log([{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25, "x": math.nan}], tmp_path / "log.tsv")
    lines = (tmp_path / "log.tsv").read_text().splitlines()
    assert lines == ["epoch\tloss\tx", "1\t0.5\tnan", "2\t0.25\tnan"]
