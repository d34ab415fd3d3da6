import math

import pytest
import torch
import train_synth as ts

from mmrec.data.sequences import EvalSplit
from mmrec.models.registry import build_model
from mmrec.train.loop import _autocast, cpu_bf16_supported, epoch_order, train_model, write_log
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


def _run(out_dir, epochs=5, lr=1e-3, interrupt_at=None, monkeypatch=None, amp="cuda"):
    """A small SASRec run (dropout on, so RNG state matters); `interrupt_at` kills it as that
    epoch starts, the way a preempted job dies."""
    import mmrec.train.loop as loop

    seqs = torch.from_numpy(ts.sequences(32, 30, 8))
    ctx = ts.context(30, max_len=7, modalities=())
    torch.manual_seed(0)
    model = build_model("sasrec", ctx, {"hidden": 16, "layers": 1, "max_len": 7, "dropout": 0.3})
    valid = EvalSplit(torch.arange(32), seqs[:, :-1], seqs[:, :-1], seqs[:, -1])
    common = TrainCommon(epochs=epochs, batch_size=8, patience=10, lr=lr, max_len=7, retention_pairs=100,
                         amp=amp)
    if interrupt_at is not None:
        real = loop.set_lrs

        def dying(opt, m, epoch):
            if epoch == interrupt_at:
                raise KeyboardInterrupt
            real(opt, m, epoch)

        monkeypatch.setattr(loop, "set_lrs", dying)
    try:
        return train_model(model, ctx, seqs, valid, common, out_dir, seed=3, arch="sasrec", name="sasrec",
                           config=model.cfg.model_dump(), progress=False)
    except KeyboardInterrupt:
        return None
    finally:
        monkeypatch and monkeypatch.undo()


def _untimed(rows):
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rows]


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    whole = _run(tmp_path / "whole")
    assert not (tmp_path / "whole" / "resume.pt").exists()                # deleted at the end
    assert _run(tmp_path / "cut", interrupt_at=4, monkeypatch=monkeypatch) is None
    assert (tmp_path / "cut" / "resume.pt").exists()
    (tmp_path / "cut" / "model.pt").unlink()                              # what `dvc repro` does first
    resumed = _run(tmp_path / "cut")
    assert resumed.epochs_run == 5 and _untimed(resumed.log) == _untimed(whole.log)
    assert [r["epoch"] for r in resumed.log] == [1, 2, 3, 4, 5]
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] and a["valid"] == b["valid"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert not (tmp_path / "cut" / "resume.pt").exists()


def test_a_changed_run_does_not_resume(tmp_path, monkeypatch):
    _run(tmp_path, epochs=5, interrupt_at=3, monkeypatch=monkeypatch)
    other = _run(tmp_path, epochs=2, lr=2e-3)                             # another lr: a new run
    assert [r["epoch"] for r in other.log] == [1, 2]
    _run(tmp_path, epochs=5, interrupt_at=3, monkeypatch=monkeypatch)
    longer = _run(tmp_path, epochs=6)                                     # a higher cap: resumes
    assert [r["epoch"] for r in longer.log] == [1, 2, 3, 4, 5, 6]


def test_validation_row_reports_cold_and_rare_recall():
    from mmrec.train.loop import validation_row

    # items 1..9: 1-2 cold (n_train 0); warm 3..9 by popularity, Q1 of 4 groups = items 3, 4
    pop = torch.tensor([0, 0, 0, 1, 2, 3, 4, 5, 6, 7])
    targets = torch.tensor([1, 2, 3, 4, 9, 9])
    ranks = torch.tensor([1, 50, 50, 3, 1, 1])
    row = validation_row(ranks, targets, pop, (10,), 4)
    assert row["valid_recall@10"] == 4 / 6
    assert row["valid_cold_recall@10"] == 0.5                          # items 1 (hit), 2 (miss)
    assert row["valid_q1_recall@10"] == 0.5                            # items 3 (miss), 4 (hit)
    none_cold = validation_row(ranks[2:], targets[2:], pop, (10,), 4)
    assert "valid_cold_recall@10" not in none_cold                     # no cold target: not 0


def test_train_log_has_the_cold_and_rare_columns(tmp_path):
    seqs = torch.from_numpy(ts.sequences(16, 20, 8))
    ctx = ts.context(20, max_len=7, modalities=())
    valid = EvalSplit(torch.arange(16), seqs[:, :-1], seqs[:, :-1], seqs[:, -1])
    common = TrainCommon(epochs=1, batch_size=8, max_len=7, retention_pairs=100)
    ctx.item_pop[seqs[0, -1]] = 0                                     # one validation target is cold
    model = build_model("sasrec", ctx, {"hidden": 16, "layers": 1, "max_len": 7})
    res = train_model(model, ctx, seqs, valid, common, tmp_path, seed=3, arch="sasrec", name="sasrec",
                      config=model.cfg.model_dump(), progress=False)
    assert {"valid_cold_recall@10", "valid_q1_recall@20"} <= set(res.log[0])
    header = (tmp_path / "train_log.tsv").read_text().splitlines()[0].split("\t")
    assert "valid_q1_recall@10" in header and "valid_cold_recall@10" in header


def test_amp_reads_booleans_and_rejects_unknown_values():
    assert TrainCommon(amp=True).amp == "cuda" and TrainCommon(amp=False).amp == "off"
    assert TrainCommon().amp == "cuda"
    import yaml

    # YAML reads on/off as booleans: `amp: on` is CUDA autocast, never the CPU's bf16
    assert TrainCommon(**yaml.safe_load("amp: on")).amp == "cuda"
    assert TrainCommon(**yaml.safe_load("amp: cuda+cpu")).amp == "cuda+cpu"
    with pytest.raises(ValueError, match="amp"):
        TrainCommon(amp="bf16")


def test_amp_off_and_cuda_train_the_same_fp32_weights_on_cpu(tmp_path):
    """On a CPU `cuda` (the default) is plain fp32: the same weights as `off`, bit for bit."""
    _run(tmp_path / "off", epochs=2, amp="off")
    _run(tmp_path / "cuda", epochs=2, amp="cuda")
    a = torch.load(tmp_path / "off" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cuda" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bf16 (AMX / AVX512-BF16)")
def test_amp_on_runs_the_forward_in_bf16_with_fp32_master_weights(tmp_path):
    with _autocast(torch.device("cpu"), "cuda+cpu")[0]:
        autocast_dtype = (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    assert autocast_dtype == torch.bfloat16
    fp32 = _run(tmp_path / "off", epochs=2, amp="off")
    bf16 = _run(tmp_path / "bf16", epochs=2, amp="cuda+cpu")
    a = torch.load(tmp_path / "off" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "bf16" / "model.pt", weights_only=True)["state_dict"]
    assert all(b[k].dtype == a[k].dtype for k in a)                       # weights stay fp32
    assert any(not torch.equal(a[k], b[k]) for k in a)                    # bf16 really ran
    # the same learning curve within bf16's rounding
    assert abs(fp32.log[-1]["loss"] - bf16.log[-1]["loss"]) < 0.05 * fp32.log[-1]["loss"]


def test_amp_on_is_fp32_where_the_cpu_has_no_bf16(monkeypatch):
    import mmrec.train.loop as loop

    monkeypatch.setattr(loop, "cpu_bf16_supported", lambda: False)
    ctx, scaler = loop._autocast(torch.device("cpu"), "cuda+cpu")
    with ctx:
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert scaler is None
