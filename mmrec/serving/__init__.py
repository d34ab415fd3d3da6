"""mmrec.serving: the `recommend@<model>` export (`export`), its top-k math (`recommend`), the
SQLite serving index (`index`) and the Parquet lookups `mmrec recommend` reads (`lookup`).

Layer: floor 5, beside `evaluate` and `train` (never importing them): loads checkpoints
(`models`).
"""
