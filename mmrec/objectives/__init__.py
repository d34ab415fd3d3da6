"""mmrec.objectives: the training objectives as pure tensor functions.

- `losses`: full softmax and debiased in-batch softmax over candidate columns (`rec_loss`).
- `distill`: ODMT's online distillation between branches.
- `correlation_kd`: KDSR's holistic (SKD) and dissected (CKD) correlation supervision.
- `gradients`: each loss term's gradient norm relative to the recommendation loss's (the
  training log's `gnorm_<term>_rel`).

Layer: beneath `models` (which call these in their `loss`) and `train`; may import `data`,
`features`, `teacher` and the bottom layer (`io`, `paths`, `registry`), never `models`,
`train`, `evaluate` or `config`.
"""
