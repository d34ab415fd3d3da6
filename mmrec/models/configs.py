"""Every model's `train.<model>` settings (pydantic), importable without torch.

`mmrec.config` validates the whole `train` section when params are loaded, in every stage: with
the settings here rather than beside the torch modules, loading params.yaml costs no torch
import (about 0.7 GB of RSS and 1.5 s, which the ingest and report stages and the
`mmrec recommend` lookup never need). `CONFIGS` maps each registered model name to its settings
class; tests/models/test_configs.py checks it against the model registry.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from mmrec.schema import StrictParams

Modality = Literal["text", "image"]


class SeqModelConfig(StrictParams):
    """Settings every sequential model reads, declared here once: `train.common` is this class
    plus the loop's settings (mmrec.train.params.TrainCommon), and a key written there fills the
    model's (mmrec.train.entries); a `train.<entry>` key overrides."""

    hidden: int = Field(64, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    max_len: int = Field(13, ge=2, le=4096)  # input positions per training sequence (attention is O(L^2))
    loss: Literal["full_ce", "inbatch"] = "full_ce"
    temperature: float = Field(1.0, gt=0)
    # dot: score = <u, v>; cosine: L2-normalised user and item vectors (per branch in the
    # multi-branch models), score = cos(u, v) / temperature (UniSRec/VQ-Rec/MISSRec use ~0.07)
    loss_norm: Literal["dot", "cosine"] = "dot"


class ContentConfig(SeqModelConfig):
    """Settings of the models that read item content besides the ID: the inductive path for
    items the ID table has not learned (mmrec.models.layers.InductiveId)."""

    # table: every item scores with its own ID row; mask: items without a training interaction
    # (items.parquet n_train = 0) use one learned [MASK] ID embedding instead of their untrained
    # row, so their content decides their vectors (UniSRec/MISSRec's inductive setting)
    cold_id: Literal["table", "mask"] = "table"
    # training only: per forward pass, the ID of this share of items is the [MASK] embedding
    # too (DropoutNet), so the content path learns to stand alone
    id_dropout: float = Field(0.0, ge=0, le=1)
    # score = model + beta x content_knn (mmrec.models.content_prior), so that items the model has
    # not learned still score by their frozen features. auto: beta chosen on validation when
    # training ends (among PRIOR_BETAS, 0 included: a prior that does not help validation is not
    # used); a number: that beta; off: none. YAML's on/off read as auto/off.
    content_prior: Union[Literal["off", "auto"], Annotated[float, Field(ge=0)]] = "auto"

    @field_validator("content_prior", mode="before")
    @classmethod
    def _prior_bool(cls, v: Any) -> Any:
        return {True: "auto", False: "off"}.get(v, v) if isinstance(v, bool) else v


class FeatureConfig(ContentConfig):
    """ContentConfig of the models that read the frozen feature vectors/tokens themselves."""

    # modalities whose frozen features are whitened (centred, decorrelated, unit variance; ZCA
    # fitted on the catalogue's pooled vectors, also applied to tokens of the same size)
    # before the model reads them; [] = none
    whiten: list[Modality] = Field(default_factory=list)


class SASRecConfig(SeqModelConfig):
    """`train.sasrec`: the shared sequence-model settings only."""


class GRU4RecConfig(SeqModelConfig):
    """`train.gru4rec`: `layers` is the number of GRU layers (RecBole's default is 1)."""

    layers: int = Field(1, ge=1)


class FusionConfig(FeatureConfig):
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


class KDSRConfig(ContentConfig):
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
    skd_form: Literal["paper", "reference"] = "reference"
    tau: float = Field(1.5, gt=0)
    # lambda1; None = the chosen form's own weight (SKD_DEFAULT_WEIGHT: reference 4, as the
    # released code; paper a weight of the same gradient scale, see correlation_kd)
    lambda_skd: Optional[float] = Field(None, ge=0)
    lambda_ckd: float = Field(0.5, ge=0)   # lambda2
    reference_weight_bug: bool = False
    include_diagonal: bool = False
    async_lr: Literal["off", "constant", "milestone"] = "constant"
    # Which item vectors SKD/CKD supervise: `table` the raw modality tables (the released code,
    # upstream of the projection and the gate); `modality` each table after its projection to
    # `hidden`; `fused` the gated item vector the recommender scores with.
    kd_on: Literal["table", "modality", "fused"] = "fused"
    # teacher: the modality tables start as the teacher's vectors (paper, released code);
    # random: N(0, 0.02), the teacher's correlations then reach them through SKD/CKD only
    table_init: Literal["teacher", "random"] = "teacher"
    # SKD's correlation on two linear projections of the vectors (the paper's g_phi) or, false,
    # on the supervised vectors themselves
    skd_projection: bool = True

    @field_validator("async_lr", mode="before")
    @classmethod
    def _yaml_off(cls, v: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false: `async_lr: off` in params.yaml means "off"
        return "off" if v is False else v


class OdmtConfig(FeatureConfig):
    """`train.odmt`. hidden/layers/heads/dropout/max_len/loss/temperature come from train.common
    unless set here; `layers`/`heads` are the per-branch SASRec encoders'."""

    loss: Literal["full_ce", "inbatch"] = "inbatch"
    modalities: Optional[list[Modality]] = None   # None = every modality with features
    # IMT. true: the ID-aware multimodal transformer. false (the paper's "w/o IMT (1)"): one
    # transformer per modality over the same tokens (imt_layers deep), the ID branch its
    # embedding. pooled: no transformer, the projected pooled vectors (an extra, cheaper variant).
    imt: Union[bool, Literal["pooled"]] = True
    imt_layers: int = Field(2, ge=1)
    imt_heads: int = Field(2, ge=1)
    imt_dropout: float = Field(0.1, ge=0, lt=1)
    id_mask: bool = True                          # modality tokens cannot attend to the ID token
    text_tokens: int = Field(32, ge=1)            # keep the first k text tokens (CLS included)
    image_grid: int = Field(0, ge=0)              # average-pool the image grid to k x k; 0 = keep all
    input_norm: bool = True                       # LayerNorm on frozen features before P_m
    imt_text_vector: bool = False                 # the pooled full-text vector as one more text token
    # ID
    use_id: bool = True
    id_init: Literal["mean", "text", "image", "none"] = "mean"
    # online distillation. true: each branch's own loss + the KD terms. false (the paper's
    # "w/o online distillation"): the late-fusion loss (CE of the mean branch logits), no KD.
    # branch_only: each branch's own loss, no KD.
    distill: Union[bool, Literal["branch_only"]] = True
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
        if self.imt != "pooled" and self.hidden % self.imt_heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by imt_heads ({self.imt_heads})")
        return self


class OdmtKdsrConfig(OdmtConfig):
    """`train.odmt_kdsr`: ODMT plus KDSR's correlation distillation on the modality branches."""

    lambda_skd: Optional[float] = Field(None, ge=0)   # None = the skd_form's own weight
    lambda_ckd: float = Field(0.5, ge=0)
    skd_tau: float = Field(1.5, gt=0)
    skd_form: Literal["paper", "reference"] = "reference"
    include_diagonal: bool = False
    reference_weight_bug: bool = False


class ContentKnnConfig(SeqModelConfig):
    """`train.content_knn`: nothing is trained; the shared sequence settings are accepted (so
    `train.common` can fill them) and only `max_len` is read (how much history the profile sees)."""

    modalities: Optional[list[Modality]] = None    # None = every modality with features
    # weight of the item k places before the most recent one in the user's profile: decay**k
    decay: float = Field(0.5, gt=0, le=1)


#: model name -> its settings class (the `config_cls` of the registered model class)
CONFIGS: dict[str, type[SeqModelConfig]] = {
    "sasrec": SASRecConfig,
    "gru4rec": GRU4RecConfig,
    "sasrec_ef": FusionConfig,
    "sasrec_lf": FusionConfig,
    "kdsr": KDSRConfig,
    "odmt": OdmtConfig,
    "odmt_kdsr": OdmtKdsrConfig,
    "content_knn": ContentKnnConfig,
}
