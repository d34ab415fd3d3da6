import math

import pytest
import torch
import torch.nn.functional as F

from mmrec.models.base import SeqBatch
from mmrec.objectives.losses import (
    Candidates,
    candidate_logits,
    full_candidates,
    full_softmax_ce,
    gather_candidates,
    inbatch_candidates,
    log_popularity,
    mask_excluded,
    rec_loss,
    softmax_ce,
    training_rows,
)


def _batch() -> SeqBatch:
    # user 0 holds item 3 twice-over via user 1's copy; user 1 has padding.
    seq = torch.tensor([[1, 2, 3, 4],
                        [0, 5, 3, 2]])
    return SeqBatch(seq)


def test_training_rows_skip_padding():
    b, t = training_rows(_batch())
    assert list(zip(b.tolist(), t.tolist())) == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2)]


def test_inbatch_label_never_masked_and_duplicates_are():
    batch = _batch()
    rows = training_rows(batch)
    log_pop = log_popularity(torch.tensor([0, 1, 2, 2, 1, 1]))
    c = inbatch_candidates(batch.seq, rows, log_pop)
    ids = batch.seq.reshape(-1)
    assert torch.equal(c.ids, ids)
    for m, (b, t) in enumerate(zip(*rows)):
        b, t = int(b), int(t)
        label = c.labels[m]
        assert int(label) == b * 4 + t + 1
        assert int(ids[label]) == int(batch.seq[b, t + 1])
        assert not c.exclude[m, label]
        own = set(batch.seq[b].tolist())
        for col in range(ids.shape[0]):
            if col == int(label):
                continue
            expect = int(ids[col]) == 0 or int(ids[col]) in own
            assert bool(c.exclude[m, col]) == expect, (m, col)
    # row (0, 1) predicts item 3: user 1's copy of item 3 (column 6) is hidden
    m = 1
    assert int(ids[c.labels[m]]) == 3 and c.exclude[m, 6]
    # padding column of user 1 is excluded for every row
    assert c.exclude[:, 4].all()


def test_logq_applied_and_zero_count_guarded():
    pop = torch.tensor([0, 4, 0, 2, 2])
    lp = log_popularity(pop)
    assert lp[0] == 0
    assert torch.isfinite(lp).all()
    assert math.isclose(float(lp[1]), math.log(4 / 8), rel_tol=1e-6)
    assert float(lp[2]) == float(lp[3])  # floor = smallest positive count
    cands = Candidates(ids=torch.tensor([1, 3]), labels=torch.tensor([0]),
                       log_q=lp[torch.tensor([1, 3])])
    user = torch.tensor([[1.0, 0.0]])
    vecs = torch.tensor([[2.0, 0.0], [1.0, 0.0]])
    logits = candidate_logits(user, vecs, cands, temperature=0.5)
    # the correction applies to the tempered logit, not divided by the temperature with it
    expect = torch.tensor([2.0, 1.0]) / 0.5 - torch.tensor([math.log(0.5), math.log(0.25)])
    assert torch.allclose(logits[0], expect)


def test_full_ce_equals_cross_entropy():
    torch.manual_seed(0)
    n_items, d = 6, 4
    table = torch.randn(n_items + 1, d)
    user = torch.randn(3, d)
    targets = torch.tensor([1, 6, 3])
    c = full_candidates(targets, n_items)
    assert torch.equal(c.ids, torch.arange(1, 7))
    loss = softmax_ce(candidate_logits(user, table[1:], c), c)
    ref = F.cross_entropy(user @ table[1:].T, targets - 1)
    assert torch.allclose(loss, ref)


@pytest.mark.parametrize("block_entries", [7, 64, 1 << 21])
def test_blocked_full_ce_equals_cross_entropy_value_and_gradients(monkeypatch, block_entries):
    """The blocked CPU path (one or many row blocks, a ragged last block) gives the value and
    both gradients of F.cross_entropy over the materialised logits, with a temperature."""
    import mmrec.objectives.losses as losses

    monkeypatch.setattr(losses, "CE_BLOCK_ENTRIES", block_entries)
    torch.manual_seed(0)
    n_items, d, m, temp = 9, 5, 11, 0.7
    batch = SeqBatch(torch.randint(1, n_items + 1, (m, 2)))
    rows = training_rows(batch)
    table = torch.randn(n_items + 1, d, dtype=torch.float64).float().requires_grad_()
    user = torch.randn(len(rows[0]), d).requires_grad_()
    loss = rec_loss("full_ce", user, table, batch, rows, None, temp)
    g_user, g_table = torch.autograd.grad(loss, (user, table))
    ref = F.cross_entropy(user @ table[1:].T / temp, batch.targets[rows] - 1)
    r_user, r_table = torch.autograd.grad(ref, (user, table))
    assert torch.allclose(loss, ref, atol=1e-6)
    assert torch.allclose(g_user, r_user, atol=1e-6) and torch.allclose(g_table, r_table, atol=1e-6)
    assert g_table[0].abs().sum() == 0                       # padding row gets nothing
    # and the function alone, labels straight
    direct = full_softmax_ce(user, table[1:], batch.targets[rows] - 1)
    assert torch.allclose(direct, F.cross_entropy(user @ table[1:].T, batch.targets[rows] - 1), atol=1e-6)


def test_rec_loss_both_kinds_finite_and_differentiable():
    torch.manual_seed(0)
    batch = _batch()
    rows = training_rows(batch)
    table = torch.randn(6, 4, requires_grad=True)
    user = torch.randn(len(rows[0]), 4, requires_grad=True)
    lp = log_popularity(torch.tensor([0, 1, 2, 2, 1, 1]))
    for kind in ("full_ce", "inbatch"):
        loss = rec_loss(kind, user, table, batch, rows, lp)
        loss.backward()
        assert torch.isfinite(loss)
        assert table.grad is not None and table.grad.abs().sum() > 0
        table.grad = None


def test_inbatch_loss_matches_hand_computation():
    batch = _batch()
    rows = training_rows(batch)
    lp = log_popularity(torch.tensor([0, 1, 2, 2, 1, 1]))
    torch.manual_seed(1)
    table = torch.randn(6, 3)
    user = torch.randn(len(rows[0]), 3)
    c = inbatch_candidates(batch.seq, rows, lp)
    got = softmax_ce(candidate_logits(user, table[c.ids], c), c)
    # by hand: for each row, logsumexp over allowed columns
    total = 0.0
    for m in range(user.shape[0]):
        allowed = ~c.exclude[m]
        s = user[m] @ table[c.ids].T - lp[c.ids]
        total += float(torch.logsumexp(s[allowed], 0) - s[c.labels[m]])
    assert math.isclose(float(got), total / user.shape[0], rel_tol=1e-5)


def test_fp16_tiny_temperature_no_overflow():
    torch.manual_seed(0)
    batch = _batch()
    rows = training_rows(batch)
    lp = log_popularity(torch.tensor([0, 1, 2, 2, 1, 1]))
    c = inbatch_candidates(batch.seq, rows, lp)
    user = (torch.randn(len(rows[0]), 8) * 30).half()
    vecs = (torch.randn(c.ids.shape[0], 8) * 30).half()
    logits = candidate_logits(user, vecs, c, temperature=0.01)
    assert logits.dtype == torch.float32
    assert not torch.isinf(logits).any() and not torch.isnan(logits).any()
    loss = softmax_ce(logits, c)
    assert torch.isfinite(loss)
    # masked entries sit at the fp32 minimum, i.e. below every real logit
    assert (logits[c.exclude] == torch.finfo(torch.float32).min).all()


def test_mask_excluded_without_mask_is_cast_only():
    c = Candidates(ids=torch.tensor([1, 2]), labels=torch.tensor([0]))
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float16)
    assert torch.equal(mask_excluded(x, c), x.float())


def test_gather_candidates_identity_without_ddp():
    ids, vecs = torch.tensor([1, 2]), torch.randn(2, 3)
    gi, gv = gather_candidates(ids, vecs)
    assert gi is ids and gv is vecs


def _dup_batch() -> SeqBatch:
    # many duplicates across and within users, and padding
    seq = torch.tensor([[0, 0, 1, 2, 3, 2],
                        [0, 3, 1, 4, 1, 5],
                        [2, 2, 6, 3, 1, 4],
                        [0, 0, 0, 5, 6, 1]])
    return SeqBatch(seq)


def test_unique_candidates_give_the_slot_softmax():
    from mmrec.objectives.losses import inbatch_unique_candidates

    batch = _dup_batch()
    rows = training_rows(batch)
    lp = log_popularity(torch.tensor([0, 5, 3, 4, 2, 2, 1]))
    torch.manual_seed(0)
    table = torch.randn(7, 5, dtype=torch.float64).float()
    user = torch.randn(len(rows[0]), 5)
    slot = inbatch_candidates(batch.seq, rows, lp)
    uniq = inbatch_unique_candidates(batch.seq, rows, lp)
    assert torch.equal(uniq.ids, torch.arange(1, 7))
    assert torch.equal(uniq.ids[uniq.labels], batch.targets[rows])
    for temp in (1.0, 0.2):
        l_slot = candidate_logits(user, table[slot.ids], slot, temp)
        l_uniq = candidate_logits(user, table[uniq.ids], uniq, temp)
        assert torch.allclose(softmax_ce(l_slot, slot), softmax_ce(l_uniq, uniq), atol=1e-5)
        # the per-item probabilities agree too (slot probabilities summed per item)
        p_slot = torch.softmax(l_slot, -1)
        p_item = torch.zeros(l_slot.shape[0], 7).index_add(1, slot.ids, p_slot)[:, 1:]
        assert torch.allclose(p_item, torch.softmax(l_uniq, -1), atol=1e-5)
    # rec_loss uses the unique form: same value as the slot form
    got = rec_loss("inbatch", user, table, batch, rows, lp)
    assert torch.allclose(got, softmax_ce(candidate_logits(user, table[slot.ids], slot), slot), atol=1e-5)


def test_unique_candidates_kd_matches_slot_kd():
    from mmrec.objectives.distill import kd_loss
    from mmrec.objectives.losses import (
        add_log_mult,
        inbatch_unique_candidates,
        row_log_mult,
    )

    batch = _dup_batch()
    rows = training_rows(batch)
    lp = log_popularity(torch.tensor([0, 5, 3, 4, 2, 2, 1]))
    torch.manual_seed(1)
    ts, tt = torch.randn(7, 5), torch.randn(7, 5)
    us, ut = torch.randn(len(rows[0]), 5), torch.randn(len(rows[0]), 5)
    slot = inbatch_candidates(batch.seq, rows, lp)
    uniq = inbatch_unique_candidates(batch.seq, rows, lp)
    off = row_log_mult(uniq)
    for kind in ("kl", "ce"):
        us_a = us.clone().requires_grad_(True)
        us_b = us.clone().requires_grad_(True)
        ref = kd_loss(candidate_logits(us_a, ts[slot.ids], slot), candidate_logits(ut, tt[slot.ids], slot),
                      0.3, kind)
        ls = candidate_logits(us_b, ts[uniq.ids], uniq, multiplicity=False)
        lt = candidate_logits(ut, tt[uniq.ids], uniq, multiplicity=False)
        got = kd_loss(ls, lt, 0.3, kind, offset=off)
        assert torch.allclose(got, ref, atol=1e-5)
        ref.backward()
        got.backward()
        assert torch.allclose(us_a.grad, us_b.grad, atol=1e-5)
    assert torch.allclose(add_log_mult(ls, uniq), candidate_logits(us, ts[uniq.ids], uniq))


def _ddp_worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        batch = _dup_batch()
        lp = log_popularity(torch.tensor([0, 5, 3, 4, 2, 2, 1]))
        torch.manual_seed(0)
        table = torch.randn(7, 5).requires_grad_(True)
        # rank 0 gets 3 users, rank 1 one user: unequal candidate counts exercise the padding
        part = SeqBatch(batch.seq[:3] if rank == 0 else batch.seq[3:])
        rows = training_rows(part)
        user = table[part.inputs][rows] * 0.5 + 0.1                     # [M, D], depends on table
        loss = rec_loss("inbatch", user, table, part, rows, lp)
        (loss * rows[0].shape[0]).backward()                            # summed over rows
        dist.all_reduce(table.grad)
        torch.save({"sum": float(loss.detach()) * rows[0].shape[0], "grad": table.grad}, f"{out}.{rank}")
        dist.barrier()      # neither rank tears gloo down while the other still talks to it
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_gathered_inbatch_equals_single_process(tmp_path):
    """Two gloo ranks with gathered candidates give the single-process loss and gradient."""
    import torch.multiprocessing as mp

    out = str(tmp_path / "res")
    init = f"file://{tmp_path / 'store'}"
    mp.spawn(_ddp_worker, args=(2, init, out), nprocs=2, join=True)
    res = [torch.load(f"{out}.{r}") for r in range(2)]
    batch = _dup_batch()
    lp = log_popularity(torch.tensor([0, 5, 3, 4, 2, 2, 1]))
    torch.manual_seed(0)
    table = torch.randn(7, 5).requires_grad_(True)
    rows = training_rows(batch)
    user = table[batch.inputs][rows] * 0.5 + 0.1
    loss = rec_loss("inbatch", user, table, batch, rows, lp) * rows[0].shape[0]
    loss.backward()
    assert abs(sum(r["sum"] for r in res) - float(loss.detach())) < 1e-4
    assert torch.allclose(res[0]["grad"], table.grad, atol=1e-5)


def test_seen_table_and_isin_paths_agree(monkeypatch):
    import mmrec.objectives.losses as L

    batch = _dup_batch()
    rows = training_rows(batch)
    lp = log_popularity(torch.tensor([0, 5, 3, 4, 2, 2, 1]))
    a = L.inbatch_unique_candidates(batch.seq, rows, lp)
    s1 = L.inbatch_candidates(batch.seq, rows, lp)
    monkeypatch.setattr(L, "_SEEN_TABLE_LIMIT", 0)
    b = L.inbatch_unique_candidates(batch.seq, rows, lp)
    s2 = L.inbatch_candidates(batch.seq, rows, lp)
    assert torch.equal(a.exclude, b.exclude) and torch.equal(s1.exclude, s2.exclude)
