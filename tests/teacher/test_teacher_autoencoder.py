"""Denoising autoencoder: learns, restores its best epoch, never sees non-training items."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mmrec.teacher.autoencoder as ae_mod
from mmrec.teacher.autoencoder import (
    Standardizer,
    encode_items,
    fit_autoencoder,
    reconstruction_loss,
    split_holdout,
)
from teacher_synth import synth_features

CPU = torch.device("cpu")
KW = dict(dim=6, noise_std=0.1, feature_dropout=0.1, batch_size=32, holdout=0.2, seed=5, device=CPU,
          progress=False)


def _data() -> tuple[torch.Tensor, np.ndarray]:
    x = torch.from_numpy(synth_features(n=200, d=24, seed=3))
    return x, np.arange(1, 161)  # items 161..200 are not training items


def test_ae_beats_untrained_and_mean_baselines() -> None:
    x, train = _data()
    res = fit_autoencoder(x, train, epochs=60, patience=10, lr=0.01, **KW)
    assert res.best_valid_loss < 0.5 * res.mean_valid_loss        # far better than predicting the mean
    assert res.best_valid_loss < 0.5 * res.untrained_valid_loss   # and than the initial weights
    assert res.best_valid_loss == min(res.valid_loss)
    assert res.train_loss[-1] < res.train_loss[0]
    # the restored model is the best epoch's model
    _, hold = split_holdout(train, KW["holdout"], KW["seed"])
    assert reconstruction_loss(res.model, x, torch.from_numpy(hold), res.standardizer, CPU) == \
        pytest.approx(res.best_valid_loss, rel=1e-6)


class _Diverging(ae_mod.Adam):
    """Adam that wrecks the weights from the `after`-th step on (a diverging lr, simulated)."""

    after = 20

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.n = 0

    @torch.no_grad()
    def step(self) -> None:
        super().step()
        self.n += 1
        if self.n >= self.after:
            for p in self.params:
                p.add_(torch.randn_like(p) * 3.0)


def test_best_weights_are_restored_not_the_last(monkeypatch) -> None:
    monkeypatch.setattr(ae_mod, "Adam", _Diverging)
    x, train = _data()
    res = fit_autoencoder(x, train, epochs=12, patience=100, lr=0.01, **KW)
    assert len(res.valid_loss) == 12 and not res.stopped_early
    assert res.valid_loss[-1] > 2 * res.best_valid_loss   # the last epoch is much worse ...
    assert res.best_epoch < 12
    _, hold = split_holdout(train, KW["holdout"], KW["seed"])
    restored = reconstruction_loss(res.model, x, torch.from_numpy(hold), res.standardizer, CPU)
    assert restored == pytest.approx(res.best_valid_loss, rel=1e-6)  # ... and is not what we keep


def test_early_stopping_stops_on_patience(monkeypatch) -> None:
    monkeypatch.setattr(ae_mod, "Adam", _Diverging)
    x, train = _data()
    res = fit_autoencoder(x, train, epochs=50, patience=3, lr=0.01, **KW)
    assert res.stopped_early and len(res.valid_loss) == res.best_epoch + 3


def test_only_training_items_shape_the_model() -> None:
    x, train = _data()
    x2 = x.clone()
    x2[170:] = torch.randn(x.shape[0] - 170, x.shape[1]) * 100  # change non-training items only
    has = torch.ones(len(x), dtype=torch.bool)
    has[0] = False
    has[165] = False
    a = fit_autoencoder(x, train, epochs=5, patience=5, lr=0.01, **KW)
    b = fit_autoencoder(x2, train, epochs=5, patience=5, lr=0.01, **KW)
    assert a.valid_loss == b.valid_loss
    za, zb = encode_items(a, x, has, CPU), encode_items(b, x2, has, CPU)
    np.testing.assert_array_equal(za[:170], zb[:170])
    assert np.all(za[0] == 0) and np.all(za[165] == 0)        # padding / featureless rows are zero
    assert np.all(np.abs(za[180]) > 0)                        # cold items are encoded too
    assert not np.array_equal(za[170:], zb[170:])


def test_standardizer_and_holdout() -> None:
    x = torch.tensor([[0.0, 1.0, 7.0], [2.0, 3.0, 7.0], [4.0, 5.0, 7.0]])
    s = Standardizer.fit(x, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(s.mean, torch.tensor([2.0, 3.0, 7.0]))
    assert s.std[2] == 1.0                                     # constant feature: no division by 0
    torch.testing.assert_close(s(x)[:, 0], torch.tensor([-1.0, 0.0, 1.0]) * (3 / 2) ** 0.5)
    fit, hold = split_holdout(np.arange(1, 101), 0.1, seed=0)
    assert len(hold) == 10 and len(fit) == 90 and not set(fit) & set(hold)
    assert np.array_equal(hold, split_holdout(np.arange(1, 101)[::-1], 0.1, seed=0)[1])
    with pytest.raises(ValueError, match="at least 2"):
        split_holdout(np.array([4]), 0.1, seed=0)


def test_adam_matches_torch_optim() -> None:
    torch.manual_seed(0)
    a, b = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)
    b.load_state_dict(a.state_dict())
    mine, ref = ae_mod.Adam(a.parameters(), lr=0.05), torch.optim.Adam(b.parameters(), lr=0.05)
    for _ in range(5):
        xb = torch.randn(8, 6)
        for model, opt in ((a, mine), (b, ref)):
            opt.zero_grad()
            model(xb).pow(2).mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
