"""Every model's `train.<model>` settings (pydantic), importable without torch.

`mmrec.config` validates the whole `train` section when params are loaded, in every stage: with
the settings here rather than beside the torch modules, loading params.yaml costs no torch
import (about 0.7 GB of RSS and 1.5 s, which the ingest and report stages and the
`mmrec recommend` lookup never need). `CONFIGS` maps each registered model name to its settings
class; tests/models/test_configs.py checks it against the model registry.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Modality = Literal["text", "image"]


class SeqModelConfig(BaseModel):
    """Settings every sequential model reads, declared here once: `train.common` is this class
    plus the loop's settings (mmrec.train.params.TrainCommon), and a key written there fills the
    model's (mmrec.train.entries); a `train.<entry>` key overrides."""

    model_config = ConfigDict(extra="forbid")

    hidden: int = Field(64, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    max_len: int = Field(13, ge=2, le=4096)  # input positions per training sequence (attention is O(L^2))
    loss: Literal["full_ce", "inbatch"] = "full_ce"
    temperature: float = Field(1.0, gt=0)


class SASRecConfig(SeqModelConfig):
    """`train.sasrec`: the shared sequence-model settings only."""


class GRU4RecConfig(SeqModelConfig):
    """`train.gru4rec`: `layers` is the number of GRU layers (RecBole's default is 1)."""

    layers: int = Field(1, ge=1)


class FusionConfig(SeqModelConfig):
    """`train.sasrec_ef` / `train.sasrec_lf`."""

    modalities: Optional[list[Literal["text", "image"]]] = None  # None = every present modality
    # linear | mlp over the pooled vectors; transformer over the token states (the ODMT paper's
    # SASRec+EF/LF: one transformer per modality, its summary token is the item vector)
    fst: Literal["linear", "mlp", "transformer"] = "mlp"
    use_id: bool = True
    fst_layers: int = Field(1, ge=1)               # fst: transformer only
    fst_heads: int = Field(2, ge=1)
    text_tokens: int = Field(16, ge=1)
    image_grid: int = Field(2, ge=0)
    input_norm: bool = True

    @model_validator(mode="after")
    def _check(self) -> "FusionConfig":
        if self.fst == "transformer" and self.hidden % self.fst_heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by fst_heads ({self.fst_heads})")
        return self


class KDSRConfig(SeqModelConfig):
    """`train.kdsr`."""

    backbone: Literal["sasrec", "gru4rec"] = "sasrec"
    # GRU layers of `backbone: gru4rec` (1, like the GRU4Rec baseline); `layers` counts the
    # transformer blocks of `backbone: sasrec` and does not apply to the GRU.
    gru_layers: int = Field(1, ge=1)
    modalities: Optional[list[Literal["text", "image"]]] = None  # None = every modality with a teacher
    fusion: Literal["gate", "mean"] = "gate"
    candidates: Literal["fused", "id"] = "fused"  # id = score against ID embeddings only (reference)
    skd: bool = True
    ckd: bool = True
    skd_form: Literal["paper", "reference"] = "paper"
    tau: float = Field(1.5, gt=0)
    lambda_skd: float = Field(4.0, ge=0)   # lambda1
    lambda_ckd: float = Field(0.5, ge=0)   # lambda2
    reference_weight_bug: bool = False
    include_diagonal: bool = False
    async_lr: Literal["off", "constant", "milestone"] = "constant"

    @field_validator("async_lr", mode="before")
    @classmethod
    def _yaml_off(cls, v: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false: `async_lr: off` in params.yaml means "off"
        return "off" if v is False else v


class OdmtConfig(SeqModelConfig):
    """`train.odmt`. hidden/layers/heads/dropout/max_len/loss/temperature come from train.common
    unless set here; `layers`/`heads` are the per-branch SASRec encoders'."""

    loss: Literal["full_ce", "inbatch"] = "inbatch"
    modalities: Optional[list[Modality]] = None   # None = every modality with features
    # IMT
    imt: bool = True
    imt_layers: int = Field(2, ge=1)
    imt_heads: int = Field(2, ge=1)
    imt_dropout: float = Field(0.1, ge=0, lt=1)
    id_mask: bool = True                          # modality tokens cannot attend to the ID token
    text_tokens: int = Field(32, ge=1)            # keep the first k text tokens (CLS included)
    image_grid: int = Field(0, ge=0)              # average-pool the image grid to k x k; 0 = keep all
    input_norm: bool = True                       # LayerNorm on frozen features before P_m
    # ID
    use_id: bool = True
    id_init: Literal["mean", "text", "image", "none"] = "mean"
    # online distillation
    distill: bool = True
    kd_temperature: float = Field(0.5, gt=0)
    kd_weight: float = Field(1.0, ge=0)
    rampup_epochs: float = Field(20.0, ge=0)
    kd_loss: Literal["ce", "kl"] = "kl"
    detach_teacher: bool = True
    item_chunk: int = Field(2048, ge=1)           # items per IMT call when encoding the catalogue

    @model_validator(mode="after")
    def _check(self) -> "OdmtConfig":
        if self.modalities is not None and len(set(self.modalities)) != len(self.modalities):
            raise ValueError("modalities lists a modality twice")
        if self.imt and self.hidden % self.imt_heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by imt_heads ({self.imt_heads})")
        return self


class OdmtKdsrConfig(OdmtConfig):
    """`train.odmt_kdsr`: ODMT plus KDSR's correlation distillation on the modality branches."""

    lambda_skd: float = Field(4.0, ge=0)
    lambda_ckd: float = Field(0.5, ge=0)
    skd_tau: float = Field(1.5, gt=0)
    skd_form: Literal["paper", "reference"] = "paper"
    include_diagonal: bool = False
    reference_weight_bug: bool = False


#: model name -> its settings class (the `config_cls` of the registered model class)
CONFIGS: dict[str, type[SeqModelConfig]] = {
    "sasrec": SASRecConfig,
    "gru4rec": GRU4RecConfig,
    "sasrec_ef": FusionConfig,
    "sasrec_lf": FusionConfig,
    "kdsr": KDSRConfig,
    "odmt": OdmtConfig,
    "odmt_kdsr": OdmtKdsrConfig,
}
