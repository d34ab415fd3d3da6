"""Schema of the `train` section of params.yaml.

`train.models` lists the models to train; each entry names a section `train.<entry>` whose keys
override `train.common` and are validated by that model's own config class (see mmrec.models).
An entry may set `arch:` to train a registered model under another name (an ablation variant).
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Protocol

from pydantic import Field, field_validator, model_validator

from mmrec.data.params import DataParams
from mmrec.features.params import ExtractParams
from mmrec.metrics.params import EvaluateParams, parse_metric
from mmrec.models.configs import ContentConfig
from mmrec.schema import OpenParams


class TrainCommon(ContentConfig):
    """`train.common`: the sequence-model settings every model shares (declared once, in
    SeqModelConfig), the content models' inductive path (ContentConfig: cold_id, id_dropout;
    models without content ignore them) plus the training loop's own."""

    # This entry's training seed (initialisation, dropout, batch order); null = the top-level
    # `seed`. Entries that differ only by it are seed replicates of one model: the report gives
    # their mean ± sd, per-seed values and pooled paired comparisons (e.g. odmt_s1: {arch: odmt,
    # seed: 1}). Data splits, the teacher and the bootstrap keep the top-level seed.
    seed: Optional[int] = None
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(5.0, gt=0)
    patience: int = Field(5, ge=1)
    # The validation metric that picks the best epoch: <recall|ndcg|mrr>@<K>, K one of evaluate.ks
    # (both checked when params load).
    select_metric: str = "recall@10"
    retention_pairs: int = Field(20_000, ge=100)
    # Mixed precision of the training forward pass (fp32 master weights, fp32 validation and
    # ranking): off = fp32 everywhere; cuda = autocast on CUDA only (bf16, or fp16 with a grad
    # scaler); cuda+cpu = also bf16 autocast on CPUs with native bf16 (AMX / AVX512-BF16), fp32
    # on other CPUs. true / false (and YAML's on / off) read as cuda / off.
    amp: Literal["off", "cuda", "cuda+cpu"] = "cuda"
    num_workers: int = Field(0, ge=0)
    # CPU intra-op threads; results repeat bit for bit only at the same count (mmrec.train.repro).
    # 0 = the stage's CPU budget (top-level `threads:` / MMREC_THREADS, mmrec.threads). Non-zero
    # wins over that budget for training's intra-op pool: the weights depend on it.
    threads: int = Field(0, ge=0)
    # Continue an interrupted run of the same training from models/<name>/resume.pt (written after
    # every epoch, deleted at the end; mmrec.train.loop): same weights as an uninterrupted run.
    resume: bool = True

    def training_seed(self, default: int) -> int:
        """The seed this entry trains with: its own `seed`, else `default` (the top-level one)."""
        return default if self.seed is None else int(self.seed)

    @field_validator("amp", mode="before")
    @classmethod
    def _amp_bool(cls, v: Any) -> Any:
        return {True: "cuda", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("select_metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        parse_metric(v)
        return v


class TrainParams(OpenParams):
    # Extra keys are the per-model sections; each is validated by its model's config class.
    models: list[str] = ["sasrec", "gru4rec", "sasrec_ef", "sasrec_lf", "kdsr", "odmt", "odmt_kdsr"]
    common: TrainCommon = TrainCommon()
    # Every entry trains with train.common's loss, epochs, patience and select_metric
    # (mmrec.train.entries.PROTOCOL_KEYS), whatever its own section or class default says.
    like_for_like: bool = False

    @model_validator(mode="after")
    def _sections_are_mappings(self) -> "TrainParams":
        for key, value in (self.model_extra or {}).items():
            if not isinstance(value, dict):
                raise ValueError(f"train.{key} must be a mapping of model settings")
        if len(set(self.models)) != len(self.models):
            raise ValueError("train.models lists a model twice")
        return self

    def section(self, name: str) -> dict[str, Any]:
        """The raw per-model section `train.<name>` (empty if absent)."""
        return dict((self.model_extra or {}).get(name, {}) or {})


class TrainConfig(Protocol):
    """The sections of params.yaml the train stage reads (`mmrec.config.Params` fits)."""

    seed: int
    device: str
    data: DataParams
    extract: ExtractParams
    train: TrainParams
    evaluate: EvaluateParams
