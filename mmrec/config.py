"""params.yaml: one validated object. Each package owns the schema of its own section.

`profiles.<dataset name>` holds settings merged over the sections when `data.name` is that name:
params.yaml's own values are the defaults for real data, and a small dataset (the embedded
sample) overrides what it must to fit its time budget. The merge is deep (mappings merge key by
key, anything else replaces), happens before validation, and `Params.profile` records which
profile was applied.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, PositiveInt, ValidationError, model_validator

from mmrec.data.params import DataParams
from mmrec.features.params import ExtractParams
from mmrec.metrics.params import EvaluateParams
from mmrec.rawparams import deep_merge
from mmrec.serving.params import RecommendParams
from mmrec.teacher.params import TeacherParams
from mmrec.train.params import TrainParams


class ParamsError(ValueError):
    """params.yaml is invalid; the message names every offending key."""


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 2026
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CPU threads each stage process may keep busy (mmrec.threads): "auto" = its affinity bounded
    # by its cgroup quota. MMREC_THREADS in the environment wins over this. Not a DVC dependency:
    # it sizes thread pools, it does not choose what is computed (train.common.threads does that
    # for training's intra-op count, and wins over this for that one pool).
    threads: Union[Literal["auto"], PositiveInt] = "auto"
    data: DataParams = DataParams()
    extract: ExtractParams = ExtractParams()
    teacher: TeacherParams = TeacherParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    recommend: RecommendParams = RecommendParams()
    # dataset name -> settings merged over the sections above (see the module docstring)
    profiles: dict[str, dict[str, Any]] = {}
    profile: Optional[str] = None  # set on load: the profile applied, if any

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or not raw.get("profiles"):
            return raw
        profiles = raw["profiles"]
        if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
            raise ValueError("profiles must map a dataset name to a mapping of settings")
        data = raw.get("data") or {}
        name = data.get("name", DataParams().name) if isinstance(data, dict) else None
        if name not in profiles:
            return raw
        prof = profiles[name]
        # dvc.yaml templates paths and stages from these raw values, before any profile applies.
        fixed = [k for k in ("profiles", "profile") if k in prof]
        fixed += [f"{sec}.{k}" for sec, k in (("data", "name"), ("data", "raw_dir"), ("train", "models"))
                  if isinstance(prof.get(sec), dict) and k in prof[sec]]
        if fixed:
            raise ValueError(f"profiles.{name} cannot set {', '.join(fixed)} (dvc.yaml reads them "
                             "from params.yaml itself): set them at the top level")
        merged = deep_merge(raw, profiles[name])
        merged["profile"] = name
        return merged

    @model_validator(mode="after")
    def _select_metric_is_evaluated(self) -> "Params":
        k = int(self.train.common.select_metric.partition("@")[2])
        if k not in self.evaluate.ks:
            raise ValueError(f"train.common.select_metric {self.train.common.select_metric!r}: "
                             f"K={k} is not among evaluate.ks {self.evaluate.ks}")
        return self


def _did_you_mean(loc: tuple) -> str:
    """For an unknown key at `loc`, the closest known key of the section that holds it."""
    from mmrec.train.entries import did_you_mean

    model: Any = Params
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None or not isinstance(field.annotation, type):
            return ""
        model = field.annotation
    return did_you_mean(str(loc[-1]), list(getattr(model, "model_fields", {})))


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem, each starting with the dotted key, e.g. `data.max_history`."""
    lines = [f"invalid parameters in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(e["loc"])
        lines.append(f"  {key}: {msg} (got {e.get('input')!r})" if e["type"] != "extra_forbidden"
                     else f"  {key}: {msg}")
    return "\n".join(lines)


def parse_params(raw: dict[str, Any], source: str = "params") -> Params:
    """Validate a params mapping; raise ParamsError naming each bad key.

    Every `train.models` entry is resolved against its model's settings
    (mmrec.models.configs, which imports no torch, so every reader can afford the full check).
    """
    try:
        params = Params.model_validate(raw or {})
    except ValidationError as err:
        raise ParamsError(format_validation_error(err, source)) from None
    from mmrec.train.entries import check_train_section

    try:
        check_train_section(params.train)
    except ValueError as err:
        raise ParamsError(f"invalid parameters in {source}:\n  " + str(err).replace("\n", "\n  ")) from None
    return params


def load_params(path: str | os.PathLike = "params.yaml") -> Params:
    """Read and validate params.yaml (see `parse_params`)."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: file not found (run from the project root or pass a path)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping")
    return parse_params(raw or {}, str(path))
