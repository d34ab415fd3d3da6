"""Denoising autoencoder that compresses frozen modality features to the teacher's `dim`.

Fixes over the autoencoder of the released KDSR code (github.com/HoldenHu/KDSR,
preprocess/utils.py): inputs are standardised with training-item statistics, corrupted during
training (Gaussian noise and feature dropout), shuffled with a seeded generator, early-stopped on
a held-out slice of the training items, and the best weights are restored from a deep copy.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm


class DenoisingAutoencoder(nn.Module):
    """Linear encoder with a tanh bottleneck, linear decoder.

    tanh (not the reference's sigmoid) keeps codes signed and centred on standardised inputs, so
    cosine correlations between items use the whole [-1, 1] range instead of crowding near 1.
    """

    def __init__(self, d_in: int, dim: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d_in, dim), nn.Tanh())
        self.decoder = nn.Linear(dim, d_in)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # [B, d_in] -> [B, dim]
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, d_in] -> [B, d_in]
        return self.decoder(self.encoder(x))


@dataclass
class Standardizer:
    """Per-feature mean/std from training items; constant features keep std 1 (no blow-up)."""

    mean: torch.Tensor  # [d_in]
    std: torch.Tensor   # [d_in]

    @classmethod
    def fit(cls, x: torch.Tensor, rows: torch.Tensor, chunk: int = 8192) -> "Standardizer":
        """Float64 running sums over `rows` of x, in chunks: no standardised copy of x is made."""
        s = torch.zeros(x.shape[1], dtype=torch.float64)
        s2 = torch.zeros_like(s)
        for k in range(0, len(rows), chunk):
            xb = x[rows[k:k + chunk]].double()
            s += xb.sum(0)
            s2 += xb.pow(2).sum(0)
        n = max(len(rows), 1)
        mean = s / n
        var = (s2 / n - mean.pow(2)).clamp_min(0)
        std = var.sqrt()
        std = torch.where(std > 1e-6 * std.max().clamp_min(1e-12), std, torch.ones_like(std))
        return cls(mean.float(), std.float())

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        return (xb - self.mean.to(xb.device)) / self.std.to(xb.device)


@dataclass
class AEResult:
    """A trained autoencoder and its training record (written to teacher.json)."""

    model: DenoisingAutoencoder
    standardizer: Standardizer
    train_loss: list[float] = field(default_factory=list)   # per epoch, corrupted inputs
    valid_loss: list[float] = field(default_factory=list)   # per epoch, clean held-out items
    best_epoch: int = 0                                     # 1-based
    best_valid_loss: float = math.inf
    untrained_valid_loss: float = math.nan                  # the same model before any step
    mean_valid_loss: float = math.nan                       # predicting the training mean
    n_fit: int = 0
    n_holdout: int = 0
    stopped_early: bool = False

    def record(self) -> dict:
        return {
            "train_loss": self.train_loss, "valid_loss": self.valid_loss,
            "best_epoch": self.best_epoch, "best_valid_loss": self.best_valid_loss,
            "epochs_run": len(self.train_loss), "stopped_early": self.stopped_early,
            "untrained_valid_loss": self.untrained_valid_loss,
            "mean_baseline_valid_loss": self.mean_valid_loss,
            "items_fit": self.n_fit, "items_holdout": self.n_holdout,
        }


class Adam:
    """Adam (Kingma & Ba, 2015) with torch.optim.Adam's defaults and update rule.

    Why not torch.optim: constructing any torch.optim optimizer imports torch._dynamo (about
    150 MB of resident memory and seconds of start-up), more than this stage's whole working set
    on small datasets and a large share of its 2 GB budget at 200k items.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, (self.b1, self.b2), self.eps, self.t = lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(self.b1).add_(p.grad, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(p.grad, p.grad, value=1 - self.b2)
            p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-self.lr / c1)


def split_holdout(items: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of training items into (fit, held-out); both get at least one item."""
    if len(items) < 2:
        raise ValueError(f"the autoencoder needs at least 2 training items with a feature, got {len(items)}")
    perm = np.random.default_rng(seed).permutation(np.sort(items))
    n_hold = min(max(1, int(round(holdout * len(items)))), len(items) - 1)
    return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])


def _corrupt(xb: torch.Tensor, noise_std: float, dropout: float, g: torch.Generator) -> torch.Tensor:
    # Masking noise without the 1/(1-p) rescale: a dropped standardised feature reads as its mean.
    if dropout > 0:
        keep = torch.rand(xb.shape, generator=g, device=xb.device) >= dropout
        xb = xb * keep
    if noise_std > 0:
        xb = xb + noise_std * torch.randn(xb.shape, generator=g, device=xb.device)
    return xb


@torch.no_grad()
def reconstruction_loss(model: nn.Module, x: torch.Tensor, rows: torch.Tensor, std: Standardizer,
                        device: torch.device, batch_size: int = 4096) -> float:
    """Mean squared error per feature of clean standardised inputs over `rows`."""
    model.eval()
    total = 0.0
    for k in range(0, len(rows), batch_size):
        xb = std(x[rows[k:k + batch_size]].to(device))
        total += float((model(xb) - xb).pow(2).sum())
    return total / (len(rows) * x.shape[1])


def fit_autoencoder(x: torch.Tensor, train_items: np.ndarray, *, dim: int, noise_std: float,
                    feature_dropout: float, epochs: int, patience: int, batch_size: int, lr: float,
                    holdout: float, seed: int, device: torch.device,
                    progress: bool = True, desc: str = "autoencoder") -> AEResult:
    """Train a denoising AE on rows `train_items` of x [N+1, d_in] (CPU tensor, may be huge).

    Early stopping on the clean reconstruction MSE of a seeded held-out slice of those items;
    the weights of the best epoch are restored (deep copy, not a live state_dict reference).
    """
    fit_rows, hold_rows = split_holdout(train_items, holdout, seed)
    fit_rows_t, hold_rows_t = torch.from_numpy(fit_rows), torch.from_numpy(hold_rows)
    std = Standardizer.fit(x, fit_rows_t)

    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        model = DenoisingAutoencoder(x.shape[1], dim).to(device)
    opt = Adam(model.parameters(), lr=lr)
    g_cpu = torch.Generator().manual_seed(seed)  # shuffling
    g_dev = torch.Generator(device=device).manual_seed(seed + 1)  # corruption

    res = AEResult(model=model, standardizer=std, n_fit=len(fit_rows), n_holdout=len(hold_rows))
    res.untrained_valid_loss = reconstruction_loss(model, x, hold_rows_t, std, device)
    # predicting the fit-items' mean: 0 after standardising, so the loss is the mean square
    res.mean_valid_loss = sum(float(std(x[hold_rows_t[k:k + 4096]]).pow(2).sum())
                              for k in range(0, len(hold_rows_t), 4096)) / (len(hold_rows_t) * x.shape[1])

    best_state = copy.deepcopy(model.state_dict())
    since_best = 0
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = fit_rows_t[torch.randperm(len(fit_rows_t), generator=g_cpu)]
        total = 0.0
        for k in range(0, len(order), batch_size):
            xb = std(x[order[k:k + batch_size]].to(device))  # [B, d_in]
            loss = (model(_corrupt(xb, noise_std, feature_dropout, g_dev)) - xb).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xb)
        res.train_loss.append(total / len(order))
        val = reconstruction_loss(model, x, hold_rows_t, std, device)
        res.valid_loss.append(val)
        bar.set_postfix(train=f"{res.train_loss[-1]:.4f}", valid=f"{val:.4f}", refresh=False)
        if val < res.best_valid_loss:
            res.best_valid_loss, res.best_epoch, since_best = val, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
            if since_best >= patience:
                res.stopped_early = True
                break
    model.load_state_dict(best_state)
    model.eval()
    return res


@torch.no_grad()
def encode_items(res: AEResult, x: torch.Tensor, has_feature: torch.Tensor, device: torch.device,
                 batch_size: int = 8192) -> np.ndarray:
    """[N+1, dim] float32 codes of every item with a feature (cold items included); zero rows
    where has_feature is False (padding row 0 included)."""
    res.model.eval()
    out = np.zeros((x.shape[0], res.model.decoder.in_features), dtype=np.float32)
    rows = torch.nonzero(has_feature).squeeze(1)
    for k in range(0, len(rows), batch_size):
        r = rows[k:k + batch_size]
        out[r.numpy()] = res.model.encode(res.standardizer(x[r].to(device))).float().cpu().numpy()
    return out
