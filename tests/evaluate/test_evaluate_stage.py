import json

import polars as pl
import pytest
import torch

import mmrec.evaluate.stage as stage
from evaluate_fakes import FakeModel, random_split, tiny_params, write_items
from mmrec.metrics.formulas import metrics_from_ranks
from mmrec.metrics.ranking import rank_targets
from mmrec.models import checkpoint


@pytest.fixture
def project(tmp_path, monkeypatch):
    n_items = 40
    model = FakeModel(n_items, dim=4, seed=11)
    splits = {"valid": random_split(30, n_items, 5, seed=1), "test": random_split(35, n_items, 5, seed=2)}
    write_items(tmp_path, n_items)
    mdir = tmp_path / "data" / "tiny" / "models" / "sasrec"
    mdir.mkdir(parents=True)
    (mdir / "model.pt").write_bytes(b"fake")
    calls = []
    monkeypatch.setattr(checkpoint, "load_model", lambda d, p, dev, root: (calls.append(d), model)[1])
    monkeypatch.setattr(stage, "_load_eval_split", lambda d, s, L: (calls.append((s, L)), splits[s])[1])
    return tmp_path, model, splits, calls


def test_run_writes_metrics_json(project):
    root, model, splits, calls = project
    params = tiny_params()
    summary = stage.run(params, root, "sasrec")
    assert ("valid", 5) in calls and ("test", 5) in calls
    doc = json.loads((root / "data/tiny/results/sasrec/metrics.json").read_text())
    assert summary["path"].endswith("results/sasrec/metrics.json")
    split = splits["test"]
    u, it = model.user_repr(split.histories).detach(), model.item_repr().detach()
    ranks = rank_targets(u, it, split.targets, split.full_history)
    ref = metrics_from_ranks(ranks, [1, 5, 10])
    for key, value in ref.items():
        assert doc[f"test_{key}"] == pytest.approx(value)
    assert doc["test_users"] == 35 and doc["valid_users"] == 30
    assert doc["test_repeat_targets"] == int((split.full_history == split.targets[:, None]).any(1).sum()) > 0
    details = {d["split"]: d for d in doc["details"]}
    test = details["test"]
    # popularity groups: cold + 2 quantile groups; their user counts add up; group 0 = cold targets
    assert [g["label"] for g in test["by_popularity"]] == ["cold", "Q1", "Q2"]
    assert sum(g["n_users"] for g in test["by_popularity"]) == 35
    n_train = pl.read_parquet(root / "data/tiny/ingest/items.parquet")["n_train"].to_list()
    pop = torch.tensor([0] + n_train)
    cold = pop[split.targets] == 0
    assert test["by_popularity"][0]["n_users"] == int(cold.sum())
    assert test["by_popularity"][0]["recall@10"] == pytest.approx(
        metrics_from_ranks(ranks[cold], [10])["recall@10"])
    assert test["by_popularity"][0]["n_items"] == int((pop[1:] == 0).sum())
    # history-length buckets (edges 3, 6)
    assert [b["label"] for b in test["by_history_length"]] == ["1-2", "3-5", "6+"]
    assert sum(b["n_users"] for b in test["by_history_length"]) == 35
    assert doc["settings"]["mask_history"] == "none"
    assert "history not masked" in doc["protocol"]
    assert set(test["overall_without_repeats"]) == set(ref)
    # per-user ranks kept for paired comparisons; intervals bracket the point estimate
    kept = pl.read_parquet(root / "data/tiny/results/sasrec/ranks.parquet").filter(pl.col("split") == "test")
    assert kept["rank"].to_list() == ranks.tolist()
    assert kept["user_idx"].to_list() == split.user_idx.tolist()
    lo, hi = doc["test_recall@10_ci95"]
    assert lo <= doc["test_recall@10"] <= hi and lo < hi
    assert test["ci95"]["ndcg@10"]["mean"] == pytest.approx(doc["test_ndcg@10"])


def test_mask_history_switch(project):
    root, model, splits, _ = project
    masked = stage.run(tiny_params(mask_history="except_target"), root, "sasrec")
    masked_all = stage.run(tiny_params(mask_history="all"), root, "sasrec")
    unmasked = stage.run(tiny_params(mask_history=False), root, "sasrec")   # legacy boolean
    doc = json.loads((root / "data/tiny/results/sasrec/metrics.json").read_text())
    assert doc["settings"]["mask_history"] == "none"
    assert masked["test_recall@10"] > unmasked["test_recall@10"]
    # "all" also masks repeated targets (misses), so it can only lose against except_target
    assert masked_all["test_recall@10"] < masked["test_recall@10"]
    assert tiny_params(mask_history=True).evaluate.mask_history == "except_target"


def test_unknown_or_untrained_model(project):
    root, *_ = project
    with pytest.raises(KeyError, match="known: sasrec, kdsr"):
        stage.run(tiny_params(), root, "nope")
    with pytest.raises(FileNotFoundError, match="kdsr/model.pt"):
        stage.run(tiny_params(), root, "kdsr")


def test_item_count_mismatch(project, tmp_path):
    root, *_ = project
    write_items(root, 39)
    with pytest.raises(ValueError, match="39"):
        stage.run(tiny_params(), root, "sasrec")


def test_load_item_pop_rejects_gaps(tmp_path):
    import polars as pl
    from mmrec.data.items import load_item_pop
    from mmrec.io import write_parquet

    p = tmp_path / "items.parquet"
    write_parquet(pl.DataFrame({"item_idx": [1, 2, 4], "n_train": [1, 2, 3]}), p)
    with pytest.raises(ValueError, match="item_idx must be exactly 1..3 in order.*3 rows spanning 1..4"):
        load_item_pop(p)
    write_parquet(pl.DataFrame({"item_idx": [1, 2, 3], "n_train": [1, 2, 3]}), p)
    assert load_item_pop(p).tolist() == [0, 1, 2, 3]


def test_run_all_models_skips_untrained(project):
    root, *_ = project
    out = stage.run(tiny_params(), root)
    assert set(out) == {"sasrec", "skipped"} and out["skipped"] == ["kdsr"]
    assert (root / "data/tiny/results/sasrec/metrics.json").exists()


def test_evaluation_takes_max_len_and_architecture_from_the_checkpoint(tmp_path, monkeypatch):
    """A model trained with max_len 4 and hidden 8 is evaluated with them, whatever params.yaml
    says now (max_len 7, hidden 16)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
    import train_synth as ts

    from mmrec.models.checkpoint import save_checkpoint
    from mmrec.models.registry import build_model

    ts.write_dataset(tmp_path, n_users=12)
    ctx = ts.context(24, max_len=4, modalities=())
    model = build_model("gru4rec", ctx, {"hidden": 8, "max_len": 4})
    mdir = tmp_path / "data/tiny/models/gru4rec"
    save_checkpoint(mdir / "model.pt", model, arch="gru4rec", name="gru4rec",
                    config=model.cfg.model_dump(mode="json"), ctx=ctx)
    params = ts.params(models=("gru4rec",), max_len=7, hidden=16)
    seen = []
    real = stage._load_eval_split
    monkeypatch.setattr(stage, "_load_eval_split", lambda d, s, L: (seen.append(L), real(d, s, L))[1])
    stage.run(params, tmp_path, "gru4rec")
    assert seen == [4, 4]
    doc = json.loads((tmp_path / "data/tiny/results/gru4rec/metrics.json").read_text())
    assert doc["test_users"] == 12
