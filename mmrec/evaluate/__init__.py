"""mmrec.evaluate: full-ranking metrics, breakdowns, modality retention, the report and plots.

Layer: may import `models` (checkpoint loading) and everything beneath them, never `train` or
`config`: evaluation does not depend on how a model was trained.
"""
