"""The content prior: a trained model's scores plus beta times content_knn's, still a dot product."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

import train_synth as ts  # noqa: E402
from mmrec.config import ParamsError, parse_params  # noqa: E402
from mmrec.models.content_prior import ContentPrior, with_content_prior  # noqa: E402
from mmrec.models.registry import build_model  # noqa: E402


def _pair(modalities=("text", "image"), **cfg):
    ctx = ts.context(20, max_len=6, modalities=modalities)
    torch.manual_seed(0)
    base = build_model("sasrec_lf", ctx, {"hidden": 16, "max_len": 6, **cfg}).eval()
    knn = build_model("content_knn", ctx, {"max_len": 6}).eval()
    return ctx, base, knn


def test_scores_are_the_model_plus_beta_times_content_knn():
    ctx, base, knn = _pair()
    hist = torch.tensor([[0, 0, 3, 8, 2, 5], [1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        got = with_content_prior(base, ctx, 2.5).score(hist)
        want = base.score(hist) + 2.5 * knn.score(hist)
    assert torch.allclose(got, want, atol=1e-5)


def test_beta_zero_is_the_model_itself_and_negative_is_an_error():
    ctx, base, _ = _pair()
    assert with_content_prior(base, ctx, 0.0) is base
    with pytest.raises(ValueError, match="beta must be >= 0"):
        with_content_prior(base, ctx, -1.0)


def test_the_prior_reads_the_modalities_and_window_of_the_model():
    ctx, base, _ = _pair(modalities=["text"])
    prior = with_content_prior(base, ctx, 1.0)
    assert isinstance(prior, ContentPrior)
    assert prior.knn.modalities == ["text"] and prior.knn.cfg.max_len == base.cfg.max_len == prior.cfg.max_len
    assert prior.retention_tables().keys() == base.retention_tables().keys()
    assert not prior.training and not prior.trainable


def test_a_new_item_like_the_last_one_rises_with_beta():
    # an item no one trained on, whose features copy the most recent item's: the model cannot
    # know it; the prior lifts it toward the top
    ctx, base, _ = _pair(modalities=("text",))
    for m in ctx.features.values():
        m.vector[17] = m.vector[9]
    hist = torch.tensor([[0, 0, 4, 2, 7, 9]])
    with torch.no_grad():
        ranks = [int((s > s[17]).sum()) for s in
                 (with_content_prior(base, ctx, b).score(hist)[0] for b in (0.0, 1.0, 100.0))]
    assert ranks[0] >= ranks[1] >= ranks[2] and ranks[2] <= 1        # only item 9 may tie ahead


@pytest.mark.parametrize("value,want", [("auto", "auto"), ("off", "off"), (False, "off"), (True, "auto"),
                                        (4, 4.0), (0.5, 0.5)])
def test_content_prior_setting_parses(value, want):
    p = ts.params(models=("odmt",), content_prior=value)
    assert p.train.common.content_prior == want


def test_a_bad_content_prior_setting_names_the_key():
    raw = ts.params(models=("odmt",)).model_dump(mode="json")
    raw["train"]["odmt"] = {"content_prior": -2}
    with pytest.raises((ParamsError, ValueError), match="content_prior"):
        parse_params(raw)
