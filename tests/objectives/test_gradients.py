import math

import torch

from mmrec.objectives.gradients import relative_grad_norms


def test_relative_norms_over_the_shared_parameters_only():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    b = torch.tensor([5.0], requires_grad=True)
    c = torch.tensor([7.0], requires_grad=True)
    terms = {"rec": (a ** 2).sum() + c.sum(), "kd": 3 * a.sum() + 10 * b.sum(), "off": b.sum()}
    out = relative_grad_norms(terms, [a, b, c])
    # shared by rec and kd: a only; d rec/da = 2a = [2, 4], d kd/da = [3, 3]
    assert math.isclose(out["gnorm_kd_rel"], math.sqrt(18) / math.sqrt(20), rel_tol=1e-6)
    assert math.isnan(out["gnorm_off_rel"])                            # shares nothing with rec
    assert a.grad is None and b.grad is None                          # .grad untouched
