"""Training repeats bit for bit (same seed, data and thread count): every registered model is
trained twice in-process and the weights compared exactly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

import models_fit  # noqa: E402
import train_synth as ts  # noqa: E402

from mmrec.io import seed_everything  # noqa: E402
from mmrec.models.registry import build_model, model_class, model_names  # noqa: E402
from mmrec.train.loop import train_model  # noqa: E402
from mmrec.train.params import TrainCommon  # noqa: E402
from mmrec.train.repro import make_repeatable  # noqa: E402


N_ITEMS, MAX_LEN = 24, 6
BASE = {"hidden": 16, "layers": 1, "heads": 2, "max_len": MAX_LEN, "dropout": 0.3}


def _context(arch: str):
    return models_fit.full_context(arch, N_ITEMS, MAX_LEN)


@pytest.fixture
def repeatable():
    """make_repeatable(1) for the test, torch's global settings restored afterwards."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn = torch.is_deterministic_algorithms_warn_only_enabled()
    make_repeatable(1)
    yield
    torch.use_deterministic_algorithms(det, warn_only=warn)
    torch.set_num_threads(threads)


def _train(arch: str, tmp_path: Path) -> dict[str, torch.Tensor]:
    seed_everything(11)                                  # what the train stage does first
    ctx = _context(arch)
    model = build_model(arch, ctx, BASE)                # dropout > 0: the RNG is in play
    seqs = torch.from_numpy(ts.sequences(32, N_ITEMS, MAX_LEN + 1))
    common = TrainCommon(epochs=2, batch_size=8, lr=1e-2, patience=5, retention_pairs=100,
                         max_len=MAX_LEN)
    train_model(model, ctx, seqs, None, common, tmp_path, seed=11, arch=arch, name=arch,
                config={}, progress=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("arch", [n for n in model_names() if model_class(n).trainable])
def test_training_twice_gives_identical_weights(arch, tmp_path, repeatable):
    first = _train(arch, tmp_path / "a")
    second = _train(arch, tmp_path / "b")
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), f"{arch}: {key} differs between two runs"
    # the weights did move (a frozen model would repeat trivially)
    torch.manual_seed(11)
    seed_everything(11)
    fresh = build_model(arch, _context(arch), BASE).state_dict()
    assert any(not torch.equal(fresh[k], first[k]) for k in first if first[k].is_floating_point())


def test_make_repeatable_fixes_threads_and_kernels(repeatable):
    assert torch.get_num_threads() == 1
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
