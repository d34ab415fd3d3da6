"""mmrec.data: raw readers (Amazon 2014/2018/2023, H&M), filters, splits, the sample generator,
and `sequences` (splits as tensors, `SeqBatch`) which training and evaluation both read.

Layer: may import only the bottom layer (`io`, `paths`, `registry`).
"""
