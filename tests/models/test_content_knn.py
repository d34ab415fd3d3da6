"""content_knn: frozen-feature cosine to the user's decayed recent items, nothing trained."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

import train_synth as ts  # noqa: E402
from mmrec.models.content_knn import recency_weights  # noqa: E402
from mmrec.models.registry import build_model  # noqa: E402


def _model(ctx, **cfg):
    return build_model("content_knn", ctx, {"max_len": ctx.max_len, **cfg}).eval()


def test_recency_weights_decay_from_the_most_recent_item_and_skip_padding():
    w = recency_weights(torch.tensor([[0, 0, 5, 7, 9], [3, 4, 5, 6, 8]]), 0.5)
    assert w.tolist() == [[0, 0, 0.25, 0.5, 1.0], [0.0625, 0.125, 0.25, 0.5, 1.0]]


def test_scores_are_the_mean_cosine_of_each_modality_to_the_decayed_profile():
    ctx = ts.context(20, max_len=6)
    model = _model(ctx, decay=0.5)
    hist = torch.tensor([[0, 0, 0, 3, 8, 2], [1, 2, 3, 4, 5, 6]])
    got = model.score(hist)                                            # [2, 21]
    want = 0
    for m in ("text", "image"):
        x = F.normalize(ctx.features[m].vector, dim=1)                     # each item counts alike
        w = torch.tensor([[0, 0, 0, 0.25, 0.5, 1], [0.03125, 0.0625, 0.125, 0.25, 0.5, 1]])
        prof = (x[hist] * w[..., None]).sum(1)
        want = want + F.cosine_similarity(prof[:, None], x[None], dim=-1) / 2
    want[:, 0] = 0                                                     # padding row: no feature
    assert torch.allclose(got, want, atol=1e-5)


def test_a_new_item_scores_from_its_content_alone():
    # an item no one bought (item_pop 0) with the most recent item's features ranks beside it
    ctx = ts.context(20, max_len=4, modalities=("text",))
    ctx.item_pop[:] = 5
    ctx.item_pop[17] = 0
    ctx.features["text"].vector[17] = 3 * ctx.features["text"].vector[9]
    s = _model(ctx, decay=0.1).score(torch.tensor([[0, 4, 2, 9]]))[0]
    top2 = set(torch.topk(s, 2).indices.tolist())
    assert top2 == {9, 17} and torch.isclose(s[17], s[9])


def test_an_item_without_a_modality_scores_zero_there_and_modalities_can_be_chosen():
    ctx = ts.context(20, max_len=4)
    ctx.features["image"].vector[5] = 0
    ctx.features["image"].has_feature[5] = False
    hist = torch.tensor([[0, 1, 2, 3]])
    both, text = _model(ctx).score(hist)[0], _model(ctx, modalities=["text"]).score(hist)[0]
    assert torch.isclose(both[5], text[5] / 2)                         # image's half is 0
    with pytest.raises(ValueError, match="content_knn.*audio|modalit"):
        build_model("content_knn", ctx, {"modalities": ["audio"]})
    with pytest.raises(ValueError, match="needs modality image"):
        _model(ts.context(20, max_len=4, modalities=("text",)), modalities=["image"])


def test_nothing_to_learn():
    model = _model(ts.context(20, max_len=4))
    assert not model.trainable and not list(model.parameters())
    assert model.state_dict() == {}                                    # the features stay out of model.pt


def test_serving_ranks_with_a_model_that_has_no_parameters():
    from mmrec.serving.recommend import top_k

    ids, scores = top_k(_model(ts.context(20, max_len=4)), [1, 2, 3], k=5, max_len=4)
    assert len(ids) == 5 and not set(ids) & {0, 1, 2, 3} and scores == sorted(scores, reverse=True)
