"""Choosing the content prior's beta on validation when training ends (mmrec.train.prior)."""

import math

import numpy as np
import pytest
import torch
import train_synth as ts

from mmrec import paths
from mmrec.config import parse_params
from mmrec.evaluate.stage import run as evaluate
from mmrec.features.store import features_table
from mmrec.io import write_parquet
from mmrec.models.checkpoint import load_model, read_checkpoint
from mmrec.models.content_prior import PRIOR_BETAS, ContentPrior
from mmrec.train.prior import candidate_betas, choose_beta
from mmrec.train.stage import run as train


def test_candidate_betas():
    assert candidate_betas("off") == ()
    assert candidate_betas("auto") == PRIOR_BETAS and PRIOR_BETAS[0] == 0.0
    assert candidate_betas(3) == (3.0,)


def test_the_best_beta_wins_the_smallest_among_equals_and_nan_never():
    rows = [{"beta": 4.0, "valid_recall@10": 0.3}, {"beta": 0.0, "valid_recall@10": 0.2},
            {"beta": 1.0, "valid_recall@10": 0.3}, {"beta": 8.0, "valid_recall@10": math.nan}]
    assert choose_beta(rows, "recall@10")["beta"] == 1.0
    assert choose_beta(rows[1:2], "recall@10")["beta"] == 0.0
    with pytest.raises(ValueError, match="no beta has a finite"):
        choose_beta(rows[3:], "recall@10")
    with pytest.raises(KeyError, match="ndcg@5"):
        choose_beta(rows, "ndcg@5")


def _ring_features(root, p, n_items: int = 24) -> None:
    """Features on a circle: item i's nearest neighbours are i +- 1, 2, ..., so content predicts
    the tiny dataset's next item (the last one + 1 or + 2)."""
    angle = 2 * np.pi * np.arange(1, n_items + 1) / n_items
    ring = np.stack([np.cos(angle), np.sin(angle)], 1).astype(np.float32)
    has = np.ones(n_items, dtype=bool)
    for m, dim in (("text", 12), ("image", 20)):
        vec = np.zeros((n_items, dim), np.float32)
        vec[:, :2] = ring
        write_parquet(features_table(np.arange(1, n_items + 1), vec, has), paths.feature_path(p, m, root),
                      metadata={"encoder": f"synthetic-{dim}"})


def _params(prior):
    raw = ts.params(models=("sasrec_lf",), epochs=1, content_prior=prior).model_dump(mode="json")
    return parse_params(raw)


def test_training_ends_by_choosing_a_prior_that_every_reader_of_model_pt_uses(tmp_path):
    ts.write_dataset(tmp_path)
    p = _params("auto")
    _ring_features(tmp_path, p)
    out = train(p, tmp_path, "sasrec_lf", progress=False)
    mdir = tmp_path / "data/tiny/models/sasrec_lf"
    ckpt = read_checkpoint(mdir)
    prior = ckpt["content_prior"]
    assert [r["beta"] for r in prior["rows"]] == list(PRIOR_BETAS)
    assert {"valid_recall@10", "valid_ndcg@10"} <= prior["rows"][0].keys()
    by_beta = {r["beta"]: r["valid_recall@10"] for r in prior["rows"]}
    # one epoch of training knows little; content that predicts the next item must be taken
    assert prior["beta"] > 0 and by_beta[prior["beta"]] > by_beta[0.0]
    assert out["content_prior_beta"] == prior["beta"]
    assert ckpt["valid"]["valid_recall@10"] == by_beta[prior["beta"]]   # what the saved model scores
    # evaluate (and export, recommend) load the model with its prior and score what validation chose
    assert isinstance(load_model(mdir, p, "cpu"), ContentPrior)
    got = evaluate(p, tmp_path, "sasrec_lf")
    assert got["valid_recall@10"] == pytest.approx(by_beta[prior["beta"]], abs=1e-6)


def test_off_and_a_fixed_beta(tmp_path):
    ts.write_dataset(tmp_path)
    p = _params("off")
    _ring_features(tmp_path, p)
    train(p, tmp_path, "sasrec_lf", progress=False)
    mdir = tmp_path / "data/tiny/models/sasrec_lf"
    assert "content_prior" not in read_checkpoint(mdir)
    model = load_model(mdir, p, "cpu")
    assert not isinstance(model, ContentPrior)
    off_valid = evaluate(p, tmp_path, "sasrec_lf")["valid_recall@10"]

    p2 = _params(2.0)
    train(p2, tmp_path, "sasrec_lf", progress=False)
    prior = read_checkpoint(mdir)["content_prior"]
    assert prior["beta"] == 2.0 and [r["beta"] for r in prior["rows"]] == [2.0]
    fixed = load_model(mdir, p2, "cpu")
    assert isinstance(fixed, ContentPrior) and fixed.beta == 2.0
    for k, v in model.state_dict().items():                   # same training, prior added after it
        assert torch.equal(v, fixed.base.state_dict()[k])
    assert evaluate(p2, tmp_path, "sasrec_lf")["valid_recall@10"] != off_valid


def test_id_only_models_have_no_prior(tmp_path):
    ts.write_dataset(tmp_path)
    p = ts.params(models=("sasrec",), epochs=1, content_prior="auto")
    out = train(p, tmp_path, "sasrec", progress=False)
    assert "content_prior_beta" not in out
    assert "content_prior" not in read_checkpoint(tmp_path / "data/tiny/models/sasrec")
