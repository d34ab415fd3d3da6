"""mmrec.metrics: the metric math, pure functions over ranks and vectors: full-ranking ranks and
Recall/NDCG/MRR@K (`ranking`), bootstrap intervals and paired comparisons (`intervals`),
breakdowns by popularity group and history length (`breakdown`), modality retention
(`retention`).

Layer: beneath `train` (model selection) and `evaluate` (the stage); imports no other mmrec
package above the bottom layer.
"""
