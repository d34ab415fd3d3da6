"""Schema of the `evaluate` section of params.yaml: how every figure is measured (cutoffs,
history masking, bootstrap), read by model selection in `train` and by the `evaluate` and
`report` stages alike, so it lives beneath them all."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator

from mmrec.schema import StrictParams

#: How a user's earlier items take part in the ranking of their next item:
#: - none:          every item is ranked, history included (the protocol of RecBole and the
#:                  published figures on the Amazon benchmarks);
#: - except_target: earlier items leave the ranking, except the target itself when it repeats;
#: - all:           earlier items leave the ranking, a repeated target included (it counts as a
#:                  miss, rank N+1).
MaskHistory = Literal["none", "except_target", "all"]
MASK_MODES: tuple[str, ...] = get_args(MaskHistory)


def mask_mode(value: "MaskHistory | bool") -> MaskHistory:
    """A mask_history setting as one of MASK_MODES; booleans read as before the modes existed
    (true = except_target, false = none)."""
    if isinstance(value, bool):
        return "except_target" if value else "none"
    if value not in MASK_MODES:
        raise ValueError(f"mask_history must be one of {', '.join(MASK_MODES)} (or true/false); got {value!r}")
    return value  # type: ignore[return-value]


#: The metric names a `<name>@<K>` setting may use (evaluate outputs all three at every K).
METRICS: tuple[str, ...] = ("recall", "ndcg", "mrr")


def parse_metric(metric: str) -> tuple[str, int]:
    """`"ndcg@10"` -> ("ndcg", 10); a clear error naming the known metrics otherwise."""
    name, _, k = metric.partition("@")
    if not k.isdigit() or int(k) < 1:
        raise ValueError(f"metric {metric!r}: expected <name>@<K> with K >= 1, e.g. recall@10")
    if name not in METRICS:
        raise ValueError(f"metric {metric!r}: known names are {', '.join(METRICS)}")
    return name, int(k)


#: Resamples for reported intervals (evaluate.bootstrap's default): at 1,000, bounds near zero
#: flip with the seed.
N_BOOT = 10_000
#: evaluate.equivalence_margin's default: a |difference| below it is too small to matter.
EQUIVALENCE_MARGIN = 0.005
#: warm popularity groups of the breakdowns, after group 0 (cold items)
POPULARITY_GROUPS = 4


class EvaluateParams(StrictParams):
    ks: list[int] = [5, 10, 20]
    # none | except_target | all (see MaskHistory above); true/false read as
    # except_target/none. Default none: the protocol of every published figure we compare with.
    mask_history: MaskHistory = "none"
    # Paired bootstrap intervals: resamples, and the model every other is compared with (the
    # report's intervals and its relative-improvement table both use this baseline).
    bootstrap: int = Field(N_BOOT, ge=100)
    baseline: str = "sasrec"
    # A paired difference whose 95% interval lies inside ±margin is "equivalent"; one that
    # neither excludes zero nor fits inside is "inconclusive" (mmrec.metrics.intervals.verdict).
    equivalence_margin: float = Field(EQUIVALENCE_MARGIN, gt=0)
    batch_users: int = Field(1024, ge=1)
    item_chunk: int = Field(65536, ge=1)
    popularity_groups: int = Field(POPULARITY_GROUPS, ge=1)
    # First history length of each new bucket: [4, 8, 12] -> 1-3, 4-7, 8-11, 12+.
    history_buckets: list[int] = [4, 8, 12]

    @field_validator("mask_history", mode="before")
    @classmethod
    def _mask_mode(cls, v: object) -> str:
        return mask_mode(v)  # type: ignore[arg-type]

    @field_validator("ks")
    @classmethod
    def _ks_positive(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 for k in v) or len(set(v)) != len(v):
            raise ValueError("ks must be a non-empty list of distinct positive cutoffs")
        return sorted(v)

    @field_validator("history_buckets")
    @classmethod
    def _edges_increasing(cls, v: list[int]) -> list[int]:
        if v != sorted(set(v)) or (v and v[0] < 2):
            raise ValueError("history_buckets must be strictly increasing lengths >= 2")
        return v


def protocol_label(cfg: EvaluateParams) -> str:
    """One line naming how a figure was measured, printed beside every figure."""
    masking = {"none": "history not masked", "except_target": "history masked except a repeated target",
               "all": "history masked (repeated targets count as misses)"}[cfg.mask_history]
    return f"full ranking over all items, {masking} (mask_history: {cfg.mask_history})"
