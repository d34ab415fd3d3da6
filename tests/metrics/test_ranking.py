import math

import numpy as np
import pytest
import torch

from evaluate_fakes import FakeModel, random_split
from mmrec.metrics.formulas import metrics_from_ranks
from mmrec.metrics.ranking import count_repeats, evaluate_model, rank_model, rank_targets


def brute_ranks(user, items, targets, history, mask):
    """Reference: 1 + number of other rankable items scoring >= the target (pessimistic ties)."""
    s = user.double().numpy() @ items.double().numpy().T          # [U, N+1], exact on integers
    out = []
    for u in range(s.shape[0]):
        t = int(targets[u])
        excluded = {0, t}
        if mask:
            excluded |= {int(h) for h in history[u] if int(h) != 0 and int(h) != t}
        ahead = sum(1 for i in range(s.shape[1]) if i not in excluded and s[u, i] >= s[u, t])
        out.append(ahead + 1)
    return np.array(out)


def brute_metrics(ranks, ks):
    out = {}
    for k in ks:
        out[f"recall@{k}"] = np.mean(ranks <= k)
        out[f"ndcg@{k}"] = np.mean(np.where(ranks <= k, 1 / np.log2(ranks + 1), 0))
        out[f"mrr@{k}"] = np.mean(np.where(ranks <= k, 1 / ranks, 0))
    return out


@pytest.mark.parametrize("mask", [True, False])
@pytest.mark.parametrize("chunk", [7, 1000])
def test_ranks_and_metrics_match_brute_force_with_ties(mask, chunk):
    model = FakeModel(n_items=60, dim=3, seed=1, levels=1)   # few distinct vectors -> many ties
    split = random_split(40, 60, max_len=5, seed=2)
    user = model.user_repr(split.histories).detach()
    items = model.item_repr().detach()
    # The fixture must actually contain ties with the target, or the test proves nothing.
    s = user @ items.T
    t = s.gather(1, split.targets[:, None])
    assert int(((s == t).sum(1) > 1).sum()) > 10
    got = rank_targets(user, items, split.targets, split.full_history, mask_history=mask, item_chunk=chunk)
    ref = brute_ranks(user, items, split.targets, split.full_history, mask)
    np.testing.assert_array_equal(got.numpy(), ref)
    ks = [1, 5, 10]
    m = metrics_from_ranks(got, ks)
    for key, value in brute_metrics(ref, ks).items():
        assert m[key] == pytest.approx(value, abs=1e-12)


def test_masking_changes_ranks_and_repeat_targets_stay_rankable():
    model = FakeModel(n_items=30, dim=4, seed=3)
    split = random_split(50, 30, max_len=4, seed=4, repeat_every=2)
    u, it = model.user_repr(split.histories).detach(), model.item_repr().detach()
    masked = rank_targets(u, it, split.targets, split.full_history, mask_history=True)
    unmasked = rank_targets(u, it, split.targets, split.full_history, mask_history=False)
    assert (masked <= unmasked).all() and (masked < unmasked).any()
    repeats = (split.full_history == split.targets[:, None]).any(1)
    assert count_repeats(split.targets, split.full_history) == int(repeats.sum()) >= 25
    # A repeated target is ranked like any other item, not forced to a miss.
    assert (masked[repeats] < 30).all()
    np.testing.assert_array_equal(
        masked.numpy(), brute_ranks(u, it, split.targets, split.full_history, True))


def test_constant_scores_rank_last():
    user = torch.ones(3, 2)
    items = torch.ones(11, 2)
    ranks = rank_targets(user, items, torch.tensor([1, 5, 10]), None)
    assert ranks.tolist() == [10, 10, 10]


def test_ndcg_on_known_ranks():
    ranks = torch.tensor([1, 2, 3, 10, 11])
    m = metrics_from_ranks(ranks, [10])
    expected = (1 + 1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(11) + 0) / 5
    assert m["ndcg@10"] == pytest.approx(expected)
    assert m["recall@10"] == pytest.approx(4 / 5)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 10) / 5)
    assert metrics_from_ranks(torch.tensor([], dtype=torch.long), [5])["recall@5"] == 0.0


def test_chunked_and_batched_evaluation_identical():
    model = FakeModel(n_items=200, dim=8, seed=5, levels=4)
    split = random_split(70, 200, max_len=6, seed=6)
    base = evaluate_model(model, split.histories, split.targets, ks=[5, 10, 20],
                          mask_items=split.full_history, batch_users=1000, item_chunk=10_000)
    for bu, ch in [(1, 1), (7, 13), (64, 201), (16, 50)]:
        r = rank_model(model, split.histories, split.targets, mask_items=split.full_history,
                       batch_users=bu, item_chunk=ch)
        assert metrics_from_ranks(r, [5, 10, 20]) == base


def test_float_models_chunked_equal_unchunked():
    torch.manual_seed(0)
    user, items = torch.randn(64, 16), torch.randn(3001, 16)
    targets = torch.randint(1, 3001, (64,))
    hist = torch.randint(0, 3001, (64, 9))
    a = rank_targets(user, items, targets, hist, item_chunk=100_000)
    b = rank_targets(user, items, targets, hist, item_chunk=97)
    assert torch.equal(a, b)


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="non-finite"):
        rank_targets(torch.tensor([[float("nan"), 1.0]]), torch.ones(4, 2), torch.tensor([1]))
    with pytest.raises(ValueError, match="1..3"):
        rank_targets(torch.ones(1, 2), torch.ones(4, 2), torch.tensor([0]))
    with pytest.raises(ValueError, match="1..3"):
        rank_targets(torch.ones(1, 2), torch.ones(4, 2), torch.tensor([4]))


def test_rank_model_restores_training_mode():
    model = FakeModel(n_items=10)
    model.train()
    split = random_split(5, 10, max_len=3)
    rank_model(model, split.histories, split.targets)
    assert model.training


def test_workspace_reuse_and_half_inputs_give_the_same_ranks():
    model = FakeModel(n_items=90, dim=4, seed=9, levels=2)
    split = random_split(30, 90, max_len=4, seed=10)
    u, it = model.user_repr(split.histories).detach(), model.item_repr().detach()
    ref = rank_targets(u, it, split.targets, split.full_history, item_chunk=17)
    ws = torch.full((30 * 17,), 123.0)             # dirty buffer: every cell must be overwritten
    assert torch.equal(rank_targets(u, it, split.targets, split.full_history, item_chunk=17, workspace=ws), ref)
    assert torch.equal(rank_targets(u, it, split.targets, split.full_history, item_chunk=17, workspace=ws), ref)
    small = torch.empty(5)                         # too small: replaced, not overrun
    assert torch.equal(rank_targets(u, it, split.targets, split.full_history, item_chunk=17, workspace=small), ref)
    # integer-valued vectors are exact in half precision too
    assert torch.equal(rank_targets(u.half(), it.half(), split.targets, split.full_history), ref)


def test_mask_modes_none_except_target_and_all():
    # 5 items; the user's history holds items 1 and 2; scores favour 1 > 2 > 3 > 4 > 5
    items = torch.tensor([[0.0], [5.0], [4.0], [3.0], [2.0], [1.0]])
    user = torch.ones(2, 1)
    history = torch.tensor([[1, 2], [1, 2]])
    targets = torch.tensor([3, 2])                  # user 1's target repeats a history item
    none = rank_targets(user, items, targets, history, mask_history="none")
    except_target = rank_targets(user, items, targets, history, mask_history="except_target")
    masked_all = rank_targets(user, items, targets, history, mask_history="all")
    assert none.tolist() == [3, 2]
    assert except_target.tolist() == [1, 1]         # 1 and 2 leave; a repeated 2 stays rankable
    assert masked_all.tolist() == [1, 6]            # a masked repeat is a miss: rank N+1
    assert rank_targets(user, items, targets, history, mask_history=True).tolist() == except_target.tolist()
    assert rank_targets(user, items, targets, history, mask_history=False).tolist() == none.tolist()
    with pytest.raises(ValueError, match="none, except_target, all"):
        rank_targets(user, items, targets, history, mask_history="some")


def test_rank_model_returns_ranks_in_input_order_whatever_the_length_batches():
    """Users are batched by history length; each user's rank must not depend on that order."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    import models_fit as mf
    from mmrec.models.registry import build_model

    ctx = mf.ts.context(30, max_len=6, modalities=())
    torch.manual_seed(0)
    model = build_model("sasrec", ctx, {"hidden": 16, "layers": 1, "max_len": 6})
    g = torch.Generator().manual_seed(2)
    hist = torch.randint(1, 31, (40, 6), generator=g)
    lengths = torch.randint(1, 7, (40,), generator=g)
    hist[torch.arange(6)[None, :] < (6 - lengths[:, None])] = 0          # left padding
    targets = torch.randint(1, 31, (40,), generator=g)
    one_by_one = torch.cat([rank_model(model, hist[i:i + 1], targets[i:i + 1]) for i in range(40)])
    assert torch.equal(rank_model(model, hist, targets, batch_users=7), one_by_one)
    perm = torch.randperm(40, generator=g)
    assert torch.equal(rank_model(model, hist[perm], targets[perm], batch_users=5), one_by_one[perm])
