"""mmrec.serving: the `recommend@<model>` export (`export`), its top-k math (`recommend`), the
SQLite serving index (`index`) and the Parquet lookups `mmrec recommend` reads (`lookup`).

Layer: beside `evaluate` and `train`: loads checkpoints (`models`), never imports a stage above.
"""
