"""params.yaml: one validated object. Each package owns the schema of its own section.

Settings that depend on the dataset live in `profiles`: `profiles.default` for every dataset
(real data) and `profiles.<dataset name>` merged over it for one dataset (the embedded sample).
A profile fills only the keys its section leaves unset (absent or null), so a value written in a
section, by hand or by `dvc exp run -S`, always wins and is never silently replaced. The fill is
deep (mappings key by key), happens before validation, and `Params.profile` records which
profiles were applied (`default+sample`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import PositiveInt, ValidationError, model_validator

from mmrec.data.params import DataParams
from mmrec.features.params import ExtractParams
from mmrec.metrics.params import EvaluateParams
from mmrec.rawparams import apply_profiles
from mmrec.schema import StrictParams
from mmrec.serving.params import RecommendParams
from mmrec.teacher.params import TeacherParams
from mmrec.train.params import TrainParams


class ParamsError(ValueError):
    """params.yaml is invalid; the message names every offending key."""


class Params(StrictParams):
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
    # dataset name (or `default`) -> settings filled into the sections above (module docstring)
    profiles: dict[str, dict[str, Any]] = {}
    profile: Optional[str] = None  # set on load: the profiles applied (`default+sample`), if any

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or not raw.get("profiles"):
            return raw
        profiles = raw["profiles"]
        if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
            raise ValueError("profiles must map a dataset name to a mapping of settings")
        for name, prof in profiles.items():
            # dvc.yaml templates paths and stages from these raw values, before any profile applies.
            fixed = [k for k in ("profiles", "profile") if k in prof]
            fixed += [f"{sec}.{k}" for sec, k in (("data", "name"), ("data", "raw_dir"), ("train", "models"))
                      if isinstance(prof.get(sec), dict) and k in prof[sec]]
            if fixed:
                raise ValueError(f"profiles.{name} cannot set {', '.join(fixed)} (dvc.yaml reads them "
                                 "from params.yaml itself): set them at the top level")
        merged, used = apply_profiles(raw)
        if used:
            merged["profile"] = "+".join(used)
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
    from mmrec.registry import did_you_mean

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


def resolved_params(params: Params) -> dict[str, Any]:
    """What the stages compute from: every section with its dataset's profile applied and every
    `train.models` entry resolved to its architecture, loop settings and full model config
    (class defaults included). `threads` and `profiles` are left out: the first sizes thread
    pools without changing results, the second is already applied.

    The params stage writes this to data/<name>/params.yaml and dvc.yaml tracks each stage's keys
    there, so DVC records (dvc.lock) and compares the values a stage really used: editing a
    profile re-runs exactly what it changes, and a model's own defaults count too.
    """
    from mmrec.models.configs import CONFIGS
    from mmrec.train.entries import check_train_section

    out = params.model_dump(mode="json", exclude={"profiles", "threads", "train"})
    entries = check_train_section(params.train)
    out["train"] = {"models": list(params.train.models), "entries": {
        name: {"arch": e.arch, "common": e.common.model_dump(mode="json"),
               "model": CONFIGS[e.arch].model_validate(e.config).model_dump(mode="json")}
        for name, e in entries.items()}}
    return out


def run(params: Params, root: Path = Path(".")) -> dict[str, Any]:
    """The `params` stage: params.yaml was validated on load (`load_params`); write its resolved
    values (`resolved_params`) for the stages after it. Every DVC stage reads its params from
    that file, so `dvc repro <any stage>` and `dvc exp run` validate params.yaml first."""
    from mmrec.atomic import atomic_path
    from mmrec.paths import resolved_params_path

    path = resolved_params_path(params, root)
    text = yaml.safe_dump(resolved_params(params), sort_keys=False, allow_unicode=True)
    with atomic_path(path) as tmp:
        tmp.write_text("# written by the params stage from params.yaml: the values the stages use\n" + text,
                       encoding="utf-8")
    return {"path": str(path), "profile": params.profile, "models": list(params.train.models)}
