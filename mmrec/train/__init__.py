"""mmrec.train: the training loop, DDP helpers and the train stage.

Layer: the top of the library; may import `evaluate` (validation ranking and retention during
training), `models`, `objectives` and everything beneath them, never `config`.
"""
