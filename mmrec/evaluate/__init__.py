"""mmrec.evaluate: the `evaluate@<model>` stage (full-ranking metrics of one trained model, its
breakdowns, per-user ranks); the math and the evaluate section's schema are in `mmrec.metrics`.

Layer: may import `models` (checkpoint loading), `metrics` and everything beneath them, never
`train` or `config`: evaluation does not depend on how a model was trained.
"""
