"""mmrec.data: the dataset-reader registry and its readers (`sources/`: Amazon 2014/2018/2023,
H&M, the generic `table`), filters, splits, the sample generator, `items` (items.parquet's
item_idx contract) and `sequences` (splits as tensors, `SeqBatch`) which training and
evaluation both read.

Layer: may import only the bottom layer (`io`, `paths`, `registry`).
"""
