"""mmrec.train: the training loop, DDP helpers and the train stage.

Layer: floor 5, beside `evaluate` and `serving` (never importing them); may import `metrics`
(validation ranking and retention during training), `models`, `objectives` and everything
beneath them, never `config`.
"""
